// seed004_sequential_vs_parallel.cpp — seed 004, "basic process pool": the same
// CPU-bound calls awaited one after another, then all at once with gather.
// Replaces Python's timing of a loop of calls against pool.map on a Pool.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <chrono>
#include <vector>

using offload::task;
using clock_type = std::chrono::steady_clock;

// Runs in a worker process: a plain function, its argument carries the state.
// Sized to take about 50 ms per call (kept small so the program ends in well under 3 s).
long long sum_of_squares_mod(int n) {
    long long total = 0;
    for (int i = 0; i < n; ++i) total = (total + static_cast<long long>(i) * i) % 1'000'003;
    return total;
}

// One call as a task, so that a vector of them can be gathered.
task<long long> one_call(offload::process_pool& pool, int n) {
    co_return co_await offload::run_in_executor(pool, sum_of_squares_mod, n);
}

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

task<int> amain(offload::process_pool& pool) {
    constexpr int calls = 4;
    constexpr int n = 15'000'000;
    co_await offload::run_in_executor(pool, sum_of_squares_mod, 1); // a first call: start-up is not timed

    // Sequential: each await finishes before the next call is sent, so one worker is busy at a time.
    auto t0 = clock_type::now();
    std::vector<long long> seq;
    for (int i = 0; i < calls; ++i) seq.push_back(co_await offload::run_in_executor(pool, sum_of_squares_mod, n + i));
    const double seq_ms = ms_since(t0);

    // Parallel: every call is in flight at once; gather returns them in argument order.
    t0 = clock_type::now();
    std::vector<task<long long>> batch;
    for (int i = 0; i < calls; ++i) batch.push_back(one_call(pool, n + i));
    std::vector<long long> par = co_await offload::gather(std::move(batch));
    const double par_ms = ms_since(t0);

    fmt::print("{} calls on {} worker processes, {} CPUs available\n", calls, pool.workers(),
               offload::available_cpus());
    fmt::print("sequential: {:7.1f} ms\n", seq_ms);
    fmt::print("gathered:   {:7.1f} ms\n", par_ms);
    // Printed, never checked: the speed-up depends on free cores (about the
    // number of workers on an idle machine, less under load or a sanitizer).
    fmt::print("speed-up:   {:7.2f}x\n", seq_ms / par_ms);

    if (seq != par) {
        fmt::print("error: the two runs disagree\n");
        co_return 1;
    }
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv); // first thing: hosts spawned workers
    offload::process_pool pool({.workers = 2});     // created before any thread starts
    return offload::run(amain(pool));
}
