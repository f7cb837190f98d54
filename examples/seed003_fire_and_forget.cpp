// seed003_fire_and_forget.cpp — seed 003, "fire-and-forget background work
// from a request handler": Python's `loop.run_in_executor(_executor, fn, ...)`
// whose future is dropped so the response returns at once. offload::submit
// starts the call now and returns a future we discard. The job handles its own
// errors; one that does not shows where an error nobody retrieved goes.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using offload::task;

// Where background jobs leave their results (Redis in the seed): written from
// pool threads, so it has its own lock.
struct result_store {
    std::mutex m;
    std::map<int, std::string> done;
    std::vector<std::string> failures;
};

// The slow synchronous call (an LLM request in the seed; 30 ms here).
std::string slow_summary(const std::string& text) {
    std::this_thread::sleep_for(30ms);
    if (text.empty()) throw std::invalid_argument("nothing to summarize");
    return text.substr(0, 8) + "...";
}

// Self-contained: catches its own errors and records every outcome, so
// dropping its future loses nothing.
void summarize_job(int id, const std::string& text, result_store& store) {
    try {
        std::string s = slow_summary(text);
        std::lock_guard lock(store.m);
        store.done[id] = std::move(s);
    } catch (const std::exception& e) {
        std::lock_guard lock(store.m);
        store.failures.push_back(fmt::format("request {}: {}", id, e.what()));
    }
}

// Not self-contained: its error escapes into a future that nobody awaits.
void careless_job(int id) { throw std::runtime_error(fmt::format("careless job {} failed", id)); }

// A request handler: save, start the slow work, answer without waiting for it.
task<std::string> handle(offload::thread_pool& bg, result_store& store, int id, std::string text) {
    // save_to_db(...) would go here.
    offload::submit(bg, summarize_job, id, std::move(text), std::ref(store)); // future discarded on purpose
    co_return R"({"ok": true})";
}

// A real server's loop runs forever, so background calls always finish. This
// demo ends, so it waits until the loop has no tasks left but this one (the
// calls' futures settle, and report unretrieved errors, on the loop).
task<> drain(std::size_t baseline) {
    auto& loop = offload::event_loop::current();
    while (loop.stats().tasks > baseline) co_await offload::sleep(1ms);
}

task<int> amain() {
    auto& loop = offload::event_loop::current();
    const std::size_t baseline = loop.stats().tasks;
    // Sized to the downstream limit (at most 2 calls at once), not to throughput.
    offload::thread_pool bg({.workers = 2, .name = "bg-worker"});
    result_store store;

    const std::vector<std::string> texts{"first request body", "", "third request body", "fourth request body"};
    for (int id = 0; id < static_cast<int>(texts.size()); ++id) {
        const auto t0 = std::chrono::steady_clock::now();
        std::string response = co_await handle(bg, store, id, texts[static_cast<std::size_t>(id)]);
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
        fmt::print("request {}: answered {} in {} us (the 30 ms job runs on)\n", id, response, us.count());
    }

    // An error that escapes a discarded future is not lost: the loop's
    // exception handler gets it. The default handler prints one line on stderr.
    offload::submit(bg, careless_job, 1);
    co_await drain(baseline);

    // A service installs its own handler (log it, count it as a metric).
    int unhandled = 0;
    loop.set_exception_handler([&unhandled](const offload::exception_context& ctx) {
        ++unhandled;
        try {
            std::rethrow_exception(ctx.exception);
        } catch (const std::exception& e) {
            fmt::print(stderr, "our handler: {}: {}\n", ctx.message, e.what());
        }
    });
    offload::submit(bg, careless_job, 2);
    co_await drain(baseline);

    std::lock_guard lock(store.m); // the pool is idle now; the lock is for form
    for (const auto& [id, summary] : store.done) fmt::print("store: request {} -> {}\n", id, summary);
    for (const auto& f : store.failures) fmt::print("store: failure recorded by the job itself: {}\n", f);

    if (store.done.size() != 3 || store.failures.size() != 1 || unhandled != 1) {
        fmt::print("FAILED: a result, a recorded failure or an unhandled-error report is missing\n");
        co_return 1;
    }
    co_return 0;
}

int main() { return offload::run(amain()); }
