// tests/support/pp_workers.hpp — what process-pool fault tests run in their
// workers (calls that sleep, spin, crash, report their pid), the start-method
// names for test output, a scoped temp directory, and whether this build runs
// under a sanitizer (which changes how some crashes look and reserves huge
// address space, so RLIMIT_AS cannot be tested there).
#pragma once

#include <eventually.hpp>

#include <offload/process_pool.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define OFFLOAD_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define OFFLOAD_TEST_SANITIZED 1
#endif
#endif
#ifndef OFFLOAD_TEST_SANITIZED
#define OFFLOAD_TEST_SANITIZED 0
#endif

namespace offload::test {

/// A directory under $TMPDIR, removed with its contents at scope exit.
struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string t = (std::filesystem::temp_directory_path() / "offload-pp-XXXXXX").string();
        if (!::mkdtemp(t.data())) throw std::runtime_error("temp_dir: mkdtemp failed");
        path = t;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

namespace pp {

inline int my_pid() { return static_cast<int>(::getpid()); }
inline int sleep_ms(int ms) {
    ::usleep(static_cast<useconds_t>(ms) * 1000);
    return ms;
}
inline int spin_forever() {
    volatile std::uint64_t n = 0;
    for (;;) n = n + 1;
}
/// Writes this worker's pid to `path` (atomically, by rename), then sleeps.
inline int pid_to_file_then_sleep(std::string path, int ms) {
    { std::ofstream(path + ".tmp") << ::getpid() << "\n"; }
    std::filesystem::rename(path + ".tmp", path);
    return sleep_ms(ms);
}
/// Creates `path`: a side effect that tells whether the call ran.
inline void touch(std::string path) { std::ofstream(path) << "ran\n"; }
inline int crash_segv() {
    std::raise(SIGSEGV);
    return 0;
}
inline int crash_abort() { std::abort(); }
inline int crash_exit3() { std::exit(3); }
/// Allocates (and touches) `bytes`; returns a byte of it.
inline int allocate(std::size_t bytes) {
    std::vector<char> v(bytes);
    v[bytes - 1] = 1;
    return v[bytes / 2] + v[bytes - 1];
}

} // namespace pp

/// Reads the pid a pp::pid_to_file_then_sleep call wrote, waiting on the loop for it.
inline task<int> pid_from_file(std::filesystem::path path, std::chrono::milliseconds limit = std::chrono::seconds(15)) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!std::filesystem::exists(path)) {
        if (std::chrono::steady_clock::now() > until) co_return -1;
        co_await sleep(std::chrono::milliseconds(2));
    }
    int pid = -1;
    std::ifstream(path) >> pid;
    co_return pid;
}

} // namespace offload::test
