// seed000_bounded_offload.cpp — seed 000, "bounding offload concurrency with a
// semaphore": Python's `async with sem: await loop.run_in_executor(pool, fn,
// item)` inside an asyncio.TaskGroup. At most K calls are in flight, so the
// producer waits instead of piling up queued calls; the same items without
// the semaphore are run for comparison.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <thread>

using namespace std::chrono_literals;
using offload::task;

// The offloaded job: a few ms of work in a worker process.
int job(int item) {
    std::this_thread::sleep_for(4ms);
    return item * item;
}

// Calls in flight now, and the most seen at once (loop-local: no atomics).
struct gauge {
    int now = 0;
    int max = 0;
};

// One item: wait for a permit (if bounded), then offload it. The permit is
// released when `permit` goes out of scope, even if the call throws.
task<> offload_one(offload::process_pool& pool, offload::semaphore* sem, int item, gauge& g, long long& sum) {
    offload::semaphore_guard permit;
    if (sem) permit = co_await sem->scoped_acquire();
    g.max = std::max(g.max, ++g.now);
    int r = co_await offload::run_in_executor(pool, job, item);
    --g.now;
    sum += r;
}

// Python's run_all: one task per item in a task group, which waits for them all.
task<gauge> run_all(offload::process_pool& pool, offload::semaphore* sem, int items, long long& sum) {
    gauge g;
    auto body = [&](offload::task_group& tg) -> task<> { // named: see STYLE.md on lambda temporaries
        for (int i = 0; i < items; ++i) tg.create_task(offload_one(pool, sem, i, g, sum));
        co_return;
    };
    co_await offload::with_task_group(body);
    co_return g;
}

task<int> amain(offload::process_pool& pool) {
    constexpr int items = 24;
    constexpr int K = 4; // about 2x the workers, as the seed suggests
    long long expected = 0;
    for (int i = 0; i < items; ++i) expected += static_cast<long long>(i) * i;

    long long sum_unbounded = 0;
    gauge unbounded = co_await run_all(pool, nullptr, items, sum_unbounded);
    const auto queued_unbounded = pool.stats().max_queued;

    offload::semaphore sem(K);
    long long sum_bounded = 0;
    gauge bounded = co_await run_all(pool, &sem, items, sum_bounded);

    fmt::print("{} items on {} workers\n", items, pool.workers());
    fmt::print("no semaphore: up to {:>2} calls in flight, up to {:>2} waiting in the pool's queue\n", unbounded.max,
               queued_unbounded);
    fmt::print("semaphore({}): up to {:>2} calls in flight\n", K, bounded.max);

    if (bounded.max > K || sum_bounded != expected || sum_unbounded != expected) {
        fmt::print("FAILED: more than {} in flight, or a wrong result\n", K);
        co_return 1;
    }
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    offload::process_pool pool({.workers = 2});
    return offload::run(amain(pool));
}
