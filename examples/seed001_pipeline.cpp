// seed001_pipeline.cpp — seed 001, a pipeline of bounded stages: each stage
// has its own workers and thread pool and a bounded inbox, so a slow last
// stage slows everything upstream (backpressure); an item that still fails
// after its retries goes to a dead-letter queue instead of vanishing.
// In Python: asyncio.Queue(maxsize) between stages, to_thread in each consumer.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using offload::task;
using steady = std::chrono::steady_clock;

constexpr int n_items = 30;
constexpr int max_attempts = 2; // one retry, then the dead-letter queue

// The work of each stage: blocking calls, run on the stage's thread pool.
// Failures are fixed by id, so every run dead-letters the same items.
int parse(int id, int /*value*/, int /*attempt*/) {
    std::this_thread::sleep_for(1ms);
    if (id % 9 == 0) throw std::invalid_argument("malformed record"); // fails every time
    return id * 10;
}
int enrich(int id, int value, int attempt) {
    std::this_thread::sleep_for(2ms);
    if (id % 7 == 0 && attempt == 1) throw std::runtime_error("lookup timed out"); // transient
    return value + 1;
}
int store(int id, int value, int /*attempt*/) {
    std::this_thread::sleep_for(4ms); // the slowest stage: the others wait on it
    if (id % 11 == 0) throw std::runtime_error("constraint violated");
    return value;
}

struct item {
    int id = 0, value = 0;
};
struct dead_letter {
    int id = 0;
    std::string stage, reason;
};

struct stage {
    const char* name;
    int (*work)(int, int, int);
    std::size_t workers;
    stage* next; // nullptr: the last stage
    offload::thread_pool pool{offload::thread_pool_options{.workers = workers}};
    offload::queue<item> inbox{4}; // every queue in the chain is bounded
    std::size_t max_depth = 0;
    int in = 0, out = 0, retried = 0, dead = 0;
};

task<> stage_worker(stage& s, offload::queue<dead_letter>& dlq) {
    try {
        for (;;) {
            item it = co_await s.inbox.get(); // throws queue_shut_down once drained
            ++s.in;
            std::string error;
            for (int attempt = 1; attempt <= max_attempts; ++attempt) {
                try {
                    it.value = co_await offload::run_in_executor(s.pool, s.work, it.id, it.value, attempt);
                    error.clear();
                    break;
                } catch (const std::exception& e) { // cancelled_error is no std::exception: it passes
                    error = e.what();
                    if (attempt < max_attempts) ++s.retried;
                }
            }
            if (!error.empty()) {
                ++s.dead;
                dead_letter d{it.id, s.name, error};
                co_await dlq.put(std::move(d));
            } else if (s.next) {
                ++s.out;
                co_await s.next->inbox.put(it); // waits while the next stage is full
                s.next->max_depth = std::max(s.next->max_depth, s.next->inbox.size());
            } else {
                ++s.out;
            }
            s.inbox.task_done(); // exactly once per item taken, or join() is wrong
        }
    } catch (const offload::queue_shut_down&) {
    }
}

// Runs a stage's workers; once they have drained its inbox, ends the next one's.
task<> run_stage(stage& s, offload::queue<dead_letter>& dlq) {
    offload::task_group tg;
    for (std::size_t w = 0; w < s.workers; ++w) tg.create_task(stage_worker(s, dlq));
    co_await tg.wait();
    if (s.next)
        s.next->inbox.shutdown();
    else
        dlq.shutdown(); // the last stage ends after all the others: no more dead letters
}

task<> source(stage& first, double& blocked_ms) {
    for (int id = 1; id <= n_items; ++id) {
        auto t0 = steady::now();
        item it{id, 0};
        co_await first.inbox.put(std::move(it)); // waits while the parse stage is full
        blocked_ms += std::chrono::duration<double, std::milli>(steady::now() - t0).count();
        first.max_depth = std::max(first.max_depth, first.inbox.size());
    }
    co_await first.inbox.join(); // every item taken and marked task_done()
    first.inbox.shutdown();
}

task<> collect(offload::queue<dead_letter>& dlq, std::vector<dead_letter>& out) {
    try {
        for (;;) out.push_back(co_await dlq.get());
    } catch (const offload::queue_shut_down&) {
    }
}

task<int> amain() {
    stage st3{"store", store, 1, nullptr};
    stage st2{"enrich", enrich, 2, &st3};
    stage st1{"parse", parse, 2, &st2};
    offload::queue<dead_letter> dlq(8);
    std::vector<dead_letter> dead;
    double blocked_ms = 0;

    offload::task_group tg;
    tg.create_task(source(st1, blocked_ms));
    for (stage* s : {&st1, &st2, &st3}) tg.create_task(run_stage(*s, dlq));
    tg.create_task(collect(dlq, dead));
    co_await tg.wait();

    fmt::print("source waited {:.0f} ms in put() (backpressure from the slow store stage)\n", blocked_ms);
    int dead_total = 0;
    bool ok = true;
    for (stage* s : {&st1, &st2, &st3}) {
        fmt::print("{:>6}: in {:2}, out {:2}, retried {}, dead {}, max inbox depth {}/{}\n", s->name, s->in, s->out,
                   s->retried, s->dead, s->max_depth, s->inbox.maxsize());
        ok = ok && s->in == s->out + s->dead && (!s->next || s->next->in == s->out);
        dead_total += s->dead;
    }
    for (const auto& d : dead) fmt::print("dead letter: item {} at {}: {}\n", d.id, d.stage, d.reason);
    // Every item ends up stored or dead-lettered, once.
    ok = ok && st1.in == n_items && st3.out + dead_total == n_items && dead.size() == std::size_t(dead_total);
    if (!ok) fmt::print("error: items lost or counted twice\n");
    co_return ok ? 0 : 1;
}

int main() { return offload::run(amain()); }
