// tests/support/pp_forgot_worker_main.cpp — helper for the test of a program
// that forgot process_pool::worker_main: its main never calls it, makes a
// spawn pool and awaits a call. It must fail with an error that names
// worker_main (exit status 1), not hang. Prints "pids: ..." first, so the
// test can check that no worker outlives it.
#include <offload/process_pool.hpp>
#include <offload/run.hpp>

#include <cstdio>
#include <exception>
#include <unistd.h>

namespace {
int add(int a, int b) { return a + b; }
} // namespace

int main() {
    try {
        offload::process_pool pool({.workers = 1, .start = offload::start_method::spawn});
        std::printf("pids:");
        for (pid_t pid : pool.worker_pids()) std::printf(" %d", static_cast<int>(pid));
        std::printf("\n");
        std::fflush(stdout);
        int v = offload::run([](offload::process_pool& p) -> offload::task<int> {
            co_return co_await offload::run_in_executor(p, add, 1, 2);
        }(pool));
        std::printf("unexpected: the call returned %d\n", v);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
