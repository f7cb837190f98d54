// seed002_event_stream.cpp — seed 002, CPU-heavy work from an event stream:
// one event arrives per interval, each takes five intervals to process, so
// five worker processes keep up, five events behind. Python's version: an
// async generator feeding a Manager queue read by 5 ProcessPoolExecutor workers.
// Scaled down: one event per 40 ms instead of one a second, 200 ms of work each.
#include <offload/offload.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using offload::task;
using steady = std::chrono::steady_clock;

constexpr auto interval = 40ms;
constexpr int n_events = 10;
constexpr int n_workers = 5; // processing time / interval: the least that keeps up

// steady_clock is CLOCK_MONOTONIC, one clock for every process on the
// machine: a worker's timestamps compare directly with the parent's.
long long now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch()).count();
}

struct timing { // what a worker sends back (an aggregate: serialized field by field)
    long long start_ns = 0, end_ns = 0;
    int pid = 0;
    long long result = 0;
};

// Runs in a worker process. It sleeps as the seed does, standing in for five
// intervals of CPU work: five spinning workers on a 2-core machine would run
// at 2/5 speed and fall behind.
timing process_event(int index) {
    timing t{now_ns(), 0, ::getpid(), 0};
    std::this_thread::sleep_for(5 * interval);
    t.result = static_cast<long long>(index) * index;
    t.end_ns = now_ns();
    return t;
}

struct timeline {
    long long t0_ns = now_ns();
    int arrived = 0, finished = 0, in_flight = 0, max_in_flight = 0;
    std::vector<int> behind;          // arrived but unfinished, at each arrival
    int arrived_before_first_end = 0; // arrivals before the first event finished
    std::vector<long long> results = std::vector<long long>(n_events + 1, -1);
    double ms(long long ns) const { return double(ns - t0_ns) / 1e6; }
};

// The event source: one event per interval (the seed's async generator).
task<> event_source(offload::queue<int>& q, timeline& tl) {
    for (int i = 1; i <= n_events; ++i) {
        co_await offload::sleep(interval);
        tl.behind.push_back(++tl.arrived - tl.finished);
        fmt::print("{:6.1f} ms  event {:2} arrives\n", tl.ms(now_ns()), i);
        co_await q.put(i); // unbounded, as the seed's queue; it stays short because we keep up
    }
    q.shutdown(); // the seed's "None per worker": each consumer stops once the queue is empty
}

// One of five consumers, each feeding one call at a time to the pool.
task<> consumer(offload::queue<int>& q, offload::process_pool& pool, timeline& tl) {
    try {
        for (;;) {
            int i = co_await q.get();
            tl.max_in_flight = std::max(tl.max_in_flight, ++tl.in_flight);
            timing t = co_await offload::run_in_executor(pool, process_event, i);
            --tl.in_flight;
            if (tl.finished++ == 0) tl.arrived_before_first_end = tl.arrived;
            tl.results[std::size_t(i)] = t.result;
            fmt::print("{:6.1f} ms  event {:2} finished in pid {} (started at {:.1f} ms)\n", tl.ms(t.end_ns), i, t.pid,
                       tl.ms(t.start_ns));
        }
    } catch (const offload::queue_shut_down&) {
    }
}

task<int> amain(offload::process_pool& pool) {
    offload::queue<int> q;
    timeline tl;
    offload::task_group tg;
    tg.create_task(event_source(q, tl));
    for (int w = 0; w < n_workers; ++w) tg.create_task(consumer(q, pool, tl));
    co_await tg.wait();

    // Timing-dependent, so printed, not checked: a slow machine may fall behind.
    fmt::print("first event finished after {} events had arrived (the seed: 5)\n", tl.arrived_before_first_end);
    fmt::print("events behind at each arrival: {} (the seed: never more than 5)\n", tl.behind);
    if (std::ranges::max(tl.behind) > n_workers)
        fmt::print("this run fell behind for a while: a slow or busy machine, not an error\n");

    // What holds on any machine: never more than five events in processing
    // (five consumers, five workers), and every event processed once, correctly.
    bool ok = tl.max_in_flight <= n_workers && tl.finished == n_events;
    for (int i = 1; i <= n_events; ++i) ok = ok && tl.results[std::size_t(i)] == static_cast<long long>(i) * i;
    if (!ok) fmt::print("error: {} events in flight at most, {} finished\n", tl.max_in_flight, tl.finished);
    co_return ok ? 0 : 1;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);       // first thing: hosts spawned workers
    offload::process_pool pool({.workers = n_workers});    // before any thread starts (forkserver)
    return offload::run(amain(pool));
}
