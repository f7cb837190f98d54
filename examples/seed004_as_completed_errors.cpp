// seed004_as_completed_errors.cpp — seed 004, "with timeout" and "error handling":
// submit every item to a process pool, then take the outcomes as they finish;
// a failing item or one past its timeout is reported, the others carry on.
// Replaces Python's `for f in as_completed(futures): f.result(timeout=...)` in try/except.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using offload::task;

constexpr int items = 8;
constexpr int hung_item = 4;
constexpr auto per_call_timeout = 1s; // each item takes at most 40 ms: a wide margin for a busy machine

// Runs in a worker process. Items finish in a different order than submitted
// (later ids are quicker), every third one throws, and one hangs.
long process_item(int id) {
    if (id == hung_item) std::this_thread::sleep_for(30s); // killed with its worker at the timeout
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * (items - id)));
    if (id % 3 == 2) throw std::invalid_argument(fmt::format("item {} has malformed input", id));
    return static_cast<long>(id) * id;
}

// The outcome of one item, whatever happened to it (the seed's ProcessResult).
struct item_result {
    int id = 0;
    std::string status; // "ok", "failed" or "timed out"
    long value = 0;
    std::string error;
};

// Per-item error handling lives in the task, so each outcome knows its item:
// the per-call timeout cancels the call, which kills the worker running it
// (the pool starts a new one), something Python's future.cancel() cannot do.
task<item_result> process_one(offload::process_pool& pool, int id) {
    try {
        long v = co_await offload::wait_for(offload::run_in_executor(pool, process_item, id), per_call_timeout);
        co_return item_result{id, "ok", v, {}};
    } catch (const offload::timeout_error&) {
        co_return item_result{id, "timed out", 0, "no result within the timeout"};
    } catch (const std::exception& e) { // the worker's std::invalid_argument arrives as itself
        co_return item_result{id, "failed", 0, e.what()};
    }
}

// What each item must end as (checked below, so the exit status says whether it did).
std::string expected_status(int id) { return id == hung_item ? "timed out" : id % 3 == 2 ? "failed" : "ok"; }

task<int> amain(offload::process_pool& pool) {
    std::vector<offload::task_handle<item_result>> handles;
    for (int id = 0; id < items; ++id) handles.push_back(offload::create_task(process_one(pool, id)));

    int seen = 0, wrong = 0;
    const auto t0 = std::chrono::steady_clock::now();
    // An overall deadline as well, like as_completed(futures, timeout=...): never reached here.
    for (auto next : offload::as_completed(std::move(handles), 20s)) {
        try {
            item_result r = co_await next;
            const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            if (r.status == "ok")
                fmt::print("{:7.1f} ms  item {}: {}\n", ms, r.id, r.value);
            else
                fmt::print("{:7.1f} ms  item {}: {}: {}\n", ms, r.id, r.status, r.error);
            ++seen;
            wrong += r.status != expected_status(r.id) || r.value != (r.status == "ok" ? long{r.id} * r.id : 0);
        } catch (const offload::timeout_error&) {
            fmt::print("the overall deadline passed; the remaining items keep running\n");
            ++wrong;
        }
    }
    const auto st = pool.stats();
    fmt::print("pool: {} completed, {} failed, {} worker(s) killed at a timeout and replaced\n", st.completed,
               st.failed, st.kills);
    if (wrong != 0 || seen != items) {
        fmt::print("error: {} of {} items ended unexpectedly\n", wrong + items - seen, items);
        co_return 1;
    }
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    // Four workers: the calls mostly sleep, and the hung one ties up a worker until its timeout.
    offload::process_pool pool({.workers = 4});
    return offload::run(amain(pool));
}
