// offload/detail/base/backtrace.hpp — capture a thread's call stack where
// nothing may allocate (inside a signal handler), and name its frames later
// on another thread. Used by the debug-mode stall watchdog (seastar's stall
// detector does the same): the loop thread, interrupted by a signal, stores
// raw return addresses; the watchdog turns them into "function(args)" with
// dladdr + __cxa_demangle, off the loop thread.
#pragma once

#include <offload/detail/base/config.hpp>

#include <cstddef>
#include <string>
#include <vector>

#if OFFLOAD_DEFINE_BODIES
#include <cxxabi.h>   // abi::__cxa_demangle
#include <dlfcn.h>    // dladdr
#include <execinfo.h> // backtrace

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#endif

namespace offload::detail {

/// Raw return addresses of one call stack, in preallocated storage.
struct raw_backtrace {
    static constexpr int max_frames = 64;
    void* frames[max_frames];
    int size = 0;
};

/// Makes capture_backtrace() async-signal-safe: glibc's backtrace() loads the
/// unwinder (libgcc_s, with malloc and a lock) on its first call, so call this
/// once, outside any signal handler, before a handler may capture.
OFFLOAD_DECL void warm_backtrace() noexcept;

/// Stores the calling thread's stack in `out` (innermost frame first).
/// Async-signal-safe once warm_backtrace() has run: no allocation, no lock.
OFFLOAD_DECL void capture_backtrace(raw_backtrace& out) noexcept;

/// The demangled form of a C++ symbol ("_Z3fooi" -> "foo(int)"), or `name`
/// itself when it is not a mangled C++ name.
OFFLOAD_DECL std::string demangle(const char* name);

/// Names the frames of `bt`, skipping the first `skip` (the capture's own
/// frames): "function(args)+0x1f" where the symbol is known (exported: a
/// static function of an executable needs -rdynamic), otherwise
/// "object-file(+0xoffset)" or the bare address. Allocates; never call it in a
/// signal handler.
OFFLOAD_DECL std::vector<std::string> symbolize(const raw_backtrace& bt, int skip = 0);

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void warm_backtrace() noexcept {
    void* frames[2];
    (void)::backtrace(frames, 2);
}

OFFLOAD_DECL void capture_backtrace(raw_backtrace& out) noexcept {
    out.size = ::backtrace(out.frames, raw_backtrace::max_frames);
}

OFFLOAD_DECL std::string demangle(const char* name) {
    if (!name) return {};
    int status = -1;
    std::unique_ptr<char, decltype(&std::free)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status), &std::free);
    return status == 0 && d ? std::string(d.get()) : std::string(name);
}

OFFLOAD_DECL std::vector<std::string> symbolize(const raw_backtrace& bt, int skip) {
    std::vector<std::string> out;
    for (int i = skip < 0 ? 0 : skip; i < bt.size; ++i) {
        const void* addr = bt.frames[i];
        // A return address points after the call; the call itself is one byte
        // back, which matters when the call is a function's last instruction.
        const void* lookup = static_cast<const char*>(addr) - (i > 0 ? 1 : 0);
        Dl_info info{};
        char buf[64];
        if (::dladdr(lookup, &info) != 0 && info.dli_sname) {
            std::string s = demangle(info.dli_sname);
            auto off = reinterpret_cast<std::uintptr_t>(addr) - reinterpret_cast<std::uintptr_t>(info.dli_saddr);
            std::snprintf(buf, sizeof buf, "+0x%llx", static_cast<unsigned long long>(off));
            out.push_back(s + buf);
        } else if (info.dli_fname) {
            auto off = reinterpret_cast<std::uintptr_t>(addr) - reinterpret_cast<std::uintptr_t>(info.dli_fbase);
            std::snprintf(buf, sizeof buf, "(+0x%llx)", static_cast<unsigned long long>(off));
            out.push_back(std::string(info.dli_fname) + buf);
        } else {
            std::snprintf(buf, sizeof buf, "%p", addr);
            out.push_back(buf);
        }
    }
    return out;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
