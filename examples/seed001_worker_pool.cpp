// seed001_worker_pool.cpp — seed 001, the bounded worker pool: a fixed number
// of worker tasks in a task_group drain a bounded queue, each item's blocking
// call goes to a thread pool of their own size, and shutdown drains within a
// deadline, reporting every item it could not finish. The Python original is
// asyncio.Queue(maxsize) + TaskGroup workers + to_thread + a timeout on the drain.
#include <offload/offload.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using offload::task;
using steady = std::chrono::steady_clock;

constexpr int n_workers = 4;
constexpr int n_items = 40;      // scaled down: 40 items of 20 ms each
constexpr std::size_t depth = 8; // the bound: put() waits when 8 items are queued

struct job {
    int id = 0;
    steady::time_point enqueued{};
};

struct pool_gauges {
    int busy = 0; // workers inside an offloaded call now
    std::size_t max_qdepth = 0;
    std::vector<double> latency_ms; // queued -> finished, per item done
    std::vector<int> interrupted;   // taken by a worker, stopped by the deadline
};

// The blocking call (a sync client, say). It polls its stop_token, so the
// shutdown deadline really stops it rather than leaving a thread busy.
void handle(std::stop_token stop, int /*id*/) {
    for (int ms = 0; ms < 20 && !stop.stop_requested(); ++ms) std::this_thread::sleep_for(1ms);
}

// Counts a worker busy while it holds an item; an item it did not finish
// (the deadline cancelled the await) is recorded, never dropped silently.
struct in_flight {
    pool_gauges& g;
    job j;
    bool done = false;
    ~in_flight() {
        --g.busy;
        if (!done) g.interrupted.push_back(j.id);
    }
};

task<> worker(offload::queue<job>& q, offload::thread_pool& pool, pool_gauges& g) {
    try {
        for (;;) {
            job j = co_await q.get(); // throws queue_shut_down once drained
            in_flight item{g, j};
            ++g.busy;
            co_await offload::run_in_executor(pool, handle, item.j.id);
            item.done = true;
            g.latency_ms.push_back(std::chrono::duration<double, std::milli>(steady::now() - item.j.enqueued).count());
        }
    } catch (const offload::queue_shut_down&) {
        // Intake stopped and the queue is empty: this worker is done.
    }
}

task<int> amain() {
    offload::thread_pool pool({.workers = n_workers}); // sized to the workers, not shared
    offload::queue<job> q(depth);
    pool_gauges g;
    offload::task_group tg; // a worker that fails stops its siblings too
    for (int w = 0; w < n_workers; ++w) tg.create_task(worker(q, pool, g));

    for (int id = 1; id <= n_items; ++id) {
        job j{id, steady::now()};
        co_await q.put(std::move(j)); // backpressure: waits while the queue is full
        g.max_qdepth = std::max(g.max_qdepth, q.size());
        if (id % 10 == 0)
            fmt::print("put {:2}: queue depth {}/{}, busy workers {}/{}\n", id, q.size(), depth, g.busy, n_workers);
    }

    // Shutdown: stop intake, let the workers drain for at most 30 ms, then
    // cancel them (wait_for cancels the group's wait, which cancels every child).
    q.shutdown();
    auto drain = tg.wait();
    try {
        co_await offload::wait_for(std::move(drain), 30ms);
        fmt::print("drained within the deadline\n");
    } catch (const offload::timeout_error&) {
        fmt::print("deadline passed: stragglers cancelled\n");
    }
    std::vector<int> left; // never taken: still queued after the workers stopped
    while (!q.empty()) left.push_back(q.try_get()->id);

    std::sort(g.latency_ms.begin(), g.latency_ms.end());
    double p95 = g.latency_ms.empty() ? 0.0
                                      : g.latency_ms[std::size_t(std::ceil(0.95 * double(g.latency_ms.size()))) - 1];
    fmt::print("done {}, interrupted {}, left in queue {}; max queue depth {}; p95 latency {:.1f} ms\n",
               g.latency_ms.size(), g.interrupted, left, g.max_qdepth, p95);

    // The invariant that holds however slow the machine: every item is accounted for.
    if (g.latency_ms.size() + g.interrupted.size() + left.size() != std::size_t(n_items)) {
        fmt::print("error: items lost\n");
        co_return 1;
    }
    co_return 0;
}

int main() { return offload::run(amain()); }
