// tests/support/pp_parent_death.cpp — helper for the parent-death test: makes
// a process pool (start method from argv[1]: fork, spawn or forkserver),
// waits until every worker has answered a call, prints "pids: <pid>..." on
// stdout, then blocks until it is killed. The test kills it with SIGKILL and
// checks that the workers die with it.
#include <offload/process_pool.hpp>
#include <offload/run.hpp>

#include <cstdio>
#include <cstring>
#include <unistd.h>

namespace {
int my_pid() { return static_cast<int>(::getpid()); }
int nap(int ms) {
    ::usleep(static_cast<useconds_t>(ms) * 1000);
    return static_cast<int>(::getpid());
}
} // namespace

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s fork|spawn|forkserver\n", argv[0]);
        return 2;
    }
    auto how = std::strcmp(argv[1], "fork") == 0    ? offload::start_method::fork
               : std::strcmp(argv[1], "spawn") == 0 ? offload::start_method::spawn
                                                    : offload::start_method::forkserver;
    offload::process_pool pool({.workers = 2, .start = how});
    offload::run([](offload::process_pool& p) -> offload::task<> {
        // Both workers busy at once: each has started and answered.
        auto a = offload::run_in_executor(p, nap, 50);
        auto b = offload::run_in_executor(p, nap, 50);
        co_await a; // (a and b are awaited in turn; both run concurrently once submitted)
        co_await b;
        co_await offload::run_in_executor(p, my_pid);
    }(pool));
    std::printf("pids:");
    for (pid_t pid : pool.worker_pids()) std::printf(" %d", static_cast<int>(pid));
    std::printf("\n");
    std::fflush(stdout);
    for (;;) ::pause();
}
