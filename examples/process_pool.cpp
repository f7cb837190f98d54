// process_pool.cpp — CPU-bound work in worker processes: typed calls, a
// chunked map, a worker that crashes without taking the pool down, and the
// pool as the loop's default executor.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <csignal>
#include <vector>

using offload::task;

// Pool callables are plain functions (or captureless lambdas): they run in
// another process, so they cannot capture state; arguments carry it instead.
int count_primes(int limit) {
    int count = 0;
    for (int n = 2; n < limit; ++n) {
        bool prime = true;
        for (int d = 2; d * d <= n && prime; ++d) prime = n % d != 0;
        count += prime;
    }
    return count;
}

int crash(int) {
    std::raise(SIGSEGV); // a bug in native code: only this call fails
    return 0;
}

task<> amain(offload::process_pool& pool) {
    int primes = co_await offload::run_in_executor(pool, count_primes, 200'000);
    fmt::print("primes below 200000: {}\n", primes);

    std::vector<int> limits;
    for (int i = 1; i <= 64; ++i) limits.push_back(i * 1000);
    // 16 limits per call: the chunk size is the lever against per-call cost.
    auto counts = co_await offload::map(pool, count_primes, limits, 16);
    fmt::print("map: {} results, last = {}\n", counts.size(), counts.back());

    try {
        co_await offload::run_in_executor(pool, crash, 0);
    } catch (const offload::worker_crashed& e) {
        fmt::print("worker {} died with signal {}; the pool replaced it\n", e.pid(), e.signal());
    }
    int again = co_await offload::run_in_executor(
        pool, [](int x) { return x + 1; }, 41);
    fmt::print("next call: {}; crashes = {}, respawns = {}\n", again, pool.stats().crashes, pool.stats().respawns);

    // The pool as the loop's default executor: offload() now runs in its workers.
    offload::event_loop::current().set_default_executor(pool);
    int more = co_await offload::offload(count_primes, 100'000);
    fmt::print("offload() on the default executor: {} primes below 100000\n", more);
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv); // first thing: hosts spawned workers
    offload::process_pool pool({.workers = 2});     // before any thread starts (forkserver)
    offload::run(amain(pool));
}
