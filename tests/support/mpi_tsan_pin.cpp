// Linked into the MPI programs of the TSan preset only (tests/CMakeLists.txt).
//
// Open MPI 4.1's runtime threads (PMIx, its TCP transport, its allocators)
// trip TSan reports inside uninstrumented libraries, and MPI_Finalize
// dlcloses its components. A report symbolizes its stack under TSan's lock and
// then needs the dynamic loader's lock, while dlclose frees memory under the
// loader's lock and needs TSan's: the process deadlocks at exit (1 run in 4 of
// bench_mpi --smoke; gdb shows the two threads). Suppressions cannot help, as
// they are matched after symbolizing. called_from_lib can: TSan then ignores
// what those libraries do, so they report nothing. But TSan aborts when such
// a library is unloaded, so this pins each called_from_lib library named in
// the suppression file (TSAN_OPTIONS=suppressions=...) before MPI starts: a
// component ("mca_*.so") from Open MPI's component directory, any other by its
// soname. Pinned libraries are never unloaded.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#ifndef OFFLOAD_OMPI_PKGLIBDIR
#error "OFFLOAD_OMPI_PKGLIBDIR (Open MPI's component directory, ompi_info --path pkglibdir) must be defined"
#endif

namespace {

std::string suppression_file() {
    const char* options = std::getenv("TSAN_OPTIONS");
    if (!options) return {};
    std::string s = options;
    auto at = s.find("suppressions=");
    if (at == std::string::npos) return {};
    at += sizeof "suppressions=" - 1;
    return s.substr(at, s.find_first_of(": ", at) - at);
}

struct pin_called_from_lib_libraries {
    pin_called_from_lib_libraries() {
        const std::string file = suppression_file();
        if (file.empty()) return;
        std::ifstream in(file);
        const std::string key = "called_from_lib:";
        for (std::string line; std::getline(in, line);) {
            if (line.rfind(key, 0) != 0) continue;
            std::string lib = line.substr(key.size());
            if (lib.rfind("mca_", 0) == 0) lib = std::string(OFFLOAD_OMPI_PKGLIBDIR) + "/" + lib;
            if (!::dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE))
                std::fprintf(stderr, "mpi_tsan_pin: cannot load %s (named in %s): %s\n", lib.c_str(), file.c_str(),
                             ::dlerror());
        }
    }
} pin;

} // namespace
