// seed004_poison_pill.cpp — seed 004, "queue-based pattern": a producer fills a
// queue, then puts one poison pill per consumer; each consumer takes items,
// offloads the heavy work to a process pool, and stops when it takes a pill.
// Replaces Python's worker processes looping on `input_queue.get()` until None.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <optional>
#include <vector>

using offload::task;

constexpr int items = 24;
constexpr int consumers = 3;

// Runs in a worker process.
long heavy_computation(int x) {
    long acc = 0;
    for (int i = 0; i < 200'000; ++i) acc = (acc * 31 + x + i) % 1'000'003;
    return acc;
}

// std::nullopt is the pill (Python's None). (queue::shutdown() is the newer
// way, as in asyncio 3.13: get() then drains the queue and throws queue_shut_down.)
using work_queue = offload::queue<std::optional<int>>;

struct result {
    int consumer, item;
    long value;
};

task<> producer(work_queue& in) {
    for (int i = 0; i < items; ++i) co_await in.put(i); // a full queue suspends the producer
    for (int c = 0; c < consumers; ++c) co_await in.put(std::nullopt); // one pill per consumer
    fmt::print("producer: {} items and {} pills queued\n", items, consumers);
}

task<> consumer(int id, offload::process_pool& pool, work_queue& in, std::vector<result>& out) {
    int done = 0;
    for (;;) {
        std::optional<int> item = co_await in.get();
        if (!item) break; // the pill: this consumer stops, the others still get theirs
        long v = co_await offload::run_in_executor(pool, heavy_computation, *item);
        out.push_back({id, *item, v}); // one loop thread: no lock needed
        ++done;
    }
    fmt::print("consumer {}: took its pill after {} items\n", id, done);
}

task<int> amain(offload::process_pool& pool) {
    work_queue in(4); // bounded: the producer is never more than 4 items ahead
    std::vector<result> out;
    // gather returns once the producer and every consumer have ended.
    co_await offload::gather(producer(in), consumer(0, pool, in, out), consumer(1, pool, in, out),
                             consumer(2, pool, in, out));

    // Every item processed exactly once, with the right value, and the queue left empty.
    std::vector<int> times_seen(items, 0);
    for (const result& r : out) {
        if (r.value != heavy_computation(r.item)) {
            fmt::print("error: item {} has a wrong value\n", r.item);
            co_return 1;
        }
        ++times_seen[static_cast<std::size_t>(r.item)];
    }
    for (int i = 0; i < items; ++i) {
        if (times_seen[static_cast<std::size_t>(i)] != 1) {
            fmt::print("error: item {} was processed {} times\n", i, times_seen[static_cast<std::size_t>(i)]);
            co_return 1;
        }
    }
    fmt::print("{} results, queue empty: {}\n", out.size(), in.empty());
    co_return in.empty() ? 0 : 1;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    offload::process_pool pool({.workers = 2});
    return offload::run(amain(pool));
}
