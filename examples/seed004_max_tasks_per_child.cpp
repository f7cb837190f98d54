// seed004_max_tasks_per_child.cpp — seed 004, "memory considerations": a
// function whose memory use only grows runs in workers that are replaced after
// a few calls, so the growth never accumulates past a bound.
// Replaces Python's ProcessPoolExecutor(max_tasks_per_child=...) / Pool(maxtasksperchild=...).
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <utility>
#include <vector>

using offload::task;

constexpr std::size_t chunk_bytes = 8 << 20; // scaled down: 8 MiB kept per call
constexpr int calls = 9;

// This process's resident set size in MiB, from /proc/self/statm.
long rss_mib() {
    long pages_total = 0, pages_resident = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
        std::fclose(f);
    }
    return pages_resident * sysconf(_SC_PAGESIZE) / (1 << 20);
}

// Runs in a worker process. A "leak": a cache that is filled and never emptied
// (still reachable, so leak checkers stay quiet, but the memory is never given
// back). Returns the worker's pid and its RSS after the call.
std::pair<int, long> leaky_call(int) {
    static std::vector<std::unique_ptr<char[]>> cache;
    cache.push_back(std::make_unique<char[]>(chunk_bytes));
    std::memset(cache.back().get(), 1, chunk_bytes); // touch it, so the pages are resident
    return {static_cast<int>(getpid()), rss_mib()};
}

// Runs `calls` calls one after another and prints where each ran; returns the
// most calls that one worker served.
task<int> run_calls(offload::process_pool& pool, const char* title) {
    fmt::print("{}\n", title);
    std::map<int, int> per_worker;
    for (int i = 0; i < calls; ++i) {
        auto [pid, rss] = co_await offload::run_in_executor(pool, leaky_call, i);
        fmt::print("  call {}: worker {}, RSS {:4} MiB\n", i, pid, rss);
        ++per_worker[pid];
    }
    const auto st = pool.stats();
    fmt::print("  {} workers served the calls; pool stats: {} completed, {} respawns\n", per_worker.size(),
               st.completed, st.respawns);
    int most = 0;
    for (auto [pid, n] : per_worker) most = std::max(most, n);
    co_return most;
}

task<int> amain(offload::process_pool& plain, offload::process_pool& recycled) {
    int most_plain = co_await run_calls(plain, "one worker, never recycled: its RSS only grows");
    int most_recycled = co_await run_calls(recycled, "one worker, max_tasks_per_child = 3: replaced after 3 calls");
    if (most_plain != calls || most_recycled != 3) {
        fmt::print("error: expected one worker for all {} calls, then 3 calls per worker (got {} and {})\n", calls,
                   most_plain, most_recycled);
        co_return 1;
    }
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    // One worker each, so every call lands on the same process until it is recycled.
    offload::process_pool plain({.workers = 1});
    offload::process_pool recycled({.workers = 1, .max_tasks_per_child = 3});
    return offload::run(amain(plain, recycled));
}
