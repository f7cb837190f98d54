// seed001_priority_queue.cpp — seed 001, priority in front of shared workers:
// urgent jobs overtake the normal ones already waiting in the queue. In
// Python: an asyncio.PriorityQueue of (priority, sequence, payload) tuples.
#include <offload/offload.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using offload::task;

struct job {
    int priority = 0; // 0 = urgent, 1 = normal
    int seq = 0;      // arrival number: keeps FIFO order among equal priorities
    std::string name;
};
// get() returns the job no other job is "less" than: here, the most urgent.
struct more_urgent {
    bool operator()(const job& a, const job& b) const {
        return std::tie(a.priority, a.seq) < std::tie(b.priority, b.seq);
    }
};
using job_queue = offload::priority_queue<job, more_urgent>;

// For the check: a mirror of the jobs sitting in the queue, by (priority, seq).
struct board {
    std::set<std::pair<int, int>> waiting;
    std::vector<std::string> order; // service order
    int checks = 0, violations = 0;
    int next_seq = 0;
};

void submit(job_queue& q, board& b, int priority, const char* prefix) {
    int seq = ++b.next_seq;
    std::size_t before = q.size();
    if (!q.try_put(job{priority, seq, fmt::format("{}{}", prefix, seq)}))
        throw std::logic_error("unbounded queue full");
    // A worker already waiting in get() is handed the job directly: it never queued.
    if (q.size() > before) b.waiting.insert({priority, seq});
}

void serve(int /*priority*/) { std::this_thread::sleep_for(10ms); } // the blocking work

task<> worker(job_queue& q, board& b) {
    try {
        for (;;) {
            job j = co_await q.get(); // throws queue_shut_down once drained
            // A job taken from the queue must be the most urgent one waiting
            // there; nothing ran between get() taking it and this line.
            if (auto it = b.waiting.find({j.priority, j.seq}); it != b.waiting.end()) {
                ++b.checks;
                if (it != b.waiting.begin()) ++b.violations;
                b.waiting.erase(it);
            }
            b.order.push_back(j.name);
            co_await offload::to_thread(serve, j.priority);
        }
    } catch (const offload::queue_shut_down&) {
    }
}

task<int> amain() {
    job_queue q; // unbounded here; bound it (maxsize) in a service
    board b;
    offload::task_group tg;
    for (int w = 0; w < 2; ++w) tg.create_task(worker(q, b)); // start at our first await

    // Wave 1, queued together: six normal jobs, then an urgent one.
    for (int i = 0; i < 6; ++i) submit(q, b, 1, "n");
    submit(q, b, 0, "U");
    co_await offload::sleep(15ms);
    // Wave 2, while the workers are busy: urgent jobs overtake the normal ones left.
    submit(q, b, 0, "U");
    submit(q, b, 1, "n");
    submit(q, b, 0, "U");
    co_await offload::sleep(15ms);
    submit(q, b, 1, "n");

    q.shutdown(); // no more jobs: the workers drain the queue, then stop
    co_await tg.wait();

    fmt::print("service order (U urgent, n normal; the number is the arrival order):\n  {}\n", fmt::join(b.order, " "));
    fmt::print("{} jobs taken from the queue, {} of them not the most urgent waiting\n", b.checks, b.violations);
    // Urgent jobs can starve normal ones under sustained urgent load: age
    // priorities, or reserve a worker for normal jobs, if that matters.
    co_return b.violations == 0 && b.order.size() == std::size_t(b.next_seq) ? 0 : 1;
}

int main() { return offload::run(amain()); }
