// seed000_count_primes.cpp — seed 000, "process pool for CPU-bound work":
// Python's `await asyncio.gather(*(loop.run_in_executor(pool, count_primes, n)
// ...))`. Several limits are counted at once in worker processes, then one
// by one, and the wall times are printed side by side.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstddef>

using offload::task;

// A plain function: it runs in another process, so it cannot be a capturing
// lambda; its argument and result cross the boundary as serialized bytes.
int count_primes(int limit) {
    int count = 0;
    for (int n = 2; n < limit; ++n) {
        bool prime = true;
        for (int d = 2; d * d <= n && prime; ++d) prime = n % d != 0;
        count += prime;
    }
    return count;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

task<int> amain(offload::process_pool& pool) {
    // Four limits (the seed counts to 200 000 four times); known: pi(n), to check the workers.
    constexpr std::array<int, 4> limits{100'000, 200'000, 300'000, 400'000};
    constexpr std::array<int, 4> known{9592, 17984, 25997, 33860};

    co_await offload::run_in_executor(pool, count_primes, 10); // warm-up: workers up and connected

    // All four at once: gather awaits them concurrently, so both workers stay busy.
    auto t0 = std::chrono::steady_clock::now();
    auto [a, b, c, d] = co_await offload::gather(offload::run_in_executor(pool, count_primes, limits[0]),
                                                 offload::run_in_executor(pool, count_primes, limits[1]),
                                                 offload::run_in_executor(pool, count_primes, limits[2]),
                                                 offload::run_in_executor(pool, count_primes, limits[3]));
    const double ms_gather = ms_since(t0);
    const std::array<int, 4> together{a, b, c, d};

    // One by one: each await finishes before the next call is sent.
    t0 = std::chrono::steady_clock::now();
    std::array<int, 4> sequential{};
    for (std::size_t i = 0; i < limits.size(); ++i)
        sequential[i] = co_await offload::run_in_executor(pool, count_primes, limits[i]);
    const double ms_sequential = ms_since(t0);

    for (std::size_t i = 0; i < limits.size(); ++i)
        fmt::print("primes below {:>7}: {:>6} (gather) {:>6} (one by one)\n", limits[i], together[i], sequential[i]);
    fmt::print("{} workers: gather {:.1f} ms, one by one {:.1f} ms (speed-up {:.2f}x; timings vary on a busy "
               "machine)\n",
               pool.workers(), ms_gather, ms_sequential, ms_sequential / ms_gather);

    if (together != known || sequential != known) {
        fmt::print("FAILED: a worker returned a wrong count\n");
        co_return 1;
    }
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv); // first thing: hosts workers started by `spawn`
    offload::process_pool pool({.workers = 2});     // before any thread starts (the forkserver forks now)
    return offload::run(amain(pool));
}
