// Tests of submit() on thread pools and executors of the user's (declared in
// <offload/to_thread.hpp>; process pools are in process_pool_test.cpp): the
// call starts before submit returns, results and errors arrive through the
// future, fire-and-forget errors reach the exception handler, cancellation
// follows the pool's rules, and shutdown, run() and loop teardown each end
// the future exactly once.
#include <offload/to_thread.hpp>

#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>

#include "user_executor.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

// Blocks a worker until opened; lets tests hold the pool busy deterministically.
// Bounded, so a failing test ends instead of hanging its pool's destructor.
struct gate {
    std::atomic<bool> open{false};
    std::atomic<int> entered{0};
    void pass() {
        entered.fetch_add(1);
        auto until = std::chrono::steady_clock::now() + 30s;
        while (!open.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(200us);
    }
};

struct custom_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Yields to the loop until `pred()` holds (bounded, so a bug fails instead of hanging).
template <class P>
task<bool> eventually(P pred, std::chrono::milliseconds limit = 10s) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > until) co_return false;
        co_await sleep(1ms);
    }
    co_return true;
}

// Awaits `f` and records how it ended: 1 value, 2 cancelled_error, 3 anything else.
template <class T>
task<int> outcome_of(future<T> f) {
    try {
        co_await f;
        co_return 1;
    } catch (const cancelled_error&) {
        co_return 2;
    } catch (...) {
        co_return 3;
    }
}

} // namespace

TEST_CASE("submit: the call starts before submit returns and runs while the task does other work", "[submit][eager]") {
    thread_pool pool({.workers = 2, .name = "eager"});
    run([](thread_pool& pool) -> task<> {
        std::atomic<bool> started{false};
        std::atomic<bool> release{false};
        auto f = submit(pool, [&started, &release] {
            started = true;
            while (!release.load()) std::this_thread::sleep_for(100us);
            return 7;
        });
        CHECK(pool.stats().submitted == 1); // handed over inside submit, not at the await
        // The task does something else and sees the call running before it awaits.
        bool seen = co_await eventually([&] { return started.load(); });
        REQUIRE(seen);
        CHECK_FALSE(f.done());
        release = true;
        int v = co_await f;
        CHECK(v == 7);
    }(pool));
}

TEST_CASE("submit: values, void, move-only results and exceptions with their type", "[submit]") {
    thread_pool pool({.workers = 2, .name = "values"});
    run([](thread_pool& pool) -> task<> {
        auto sum = submit(
            pool, [](int a, int b) { return a + b; }, 2, 40);
        auto text = submit(
            pool, [](std::string s) { return s + "!"; }, std::string("hi"));
        int touched = 0;
        auto none = submit(
            pool, [](int& t) { t = 5; }, std::ref(touched));
        auto ptr = submit(
            pool, [](std::unique_ptr<int> p) { return std::make_unique<int>(*p * 3); }, std::make_unique<int>(14));
        auto bad = submit(pool, []() -> int { throw custom_error("custom"); });
        int s = co_await sum;
        CHECK(s == 42);
        std::string t = co_await text;
        CHECK(t == "hi!");
        co_await none;
        CHECK(touched == 5);
        auto p = co_await ptr;
        REQUIRE(p);
        CHECK(*p == 42);
        std::string what;
        try {
            co_await bad;
        } catch (const custom_error& e) {
            what = e.what();
        }
        CHECK(what == "custom");
        CHECK(bad.done());
        CHECK_FALSE(bad.cancelled());
    }(pool));
}

TEST_CASE("submit: several tasks await one submitted call and all get its value", "[submit]") {
    thread_pool pool({.workers = 1, .name = "many"});
    run([](thread_pool& pool) -> task<> {
        std::atomic<int> runs{0};
        auto f = submit(pool, [&runs] {
            runs.fetch_add(1);
            std::this_thread::sleep_for(20ms);
            return 11;
        });
        auto wait_for_it = [](future<int> f) -> task<int> { co_return co_await f; };
        auto a = create_task(wait_for_it(f));
        auto b = create_task(wait_for_it(f));
        int va = co_await a;
        int vb = co_await b;
        int vc = co_await f;
        CHECK(va == 11);
        CHECK(vb == 11);
        CHECK(vc == 11);
        CHECK(runs.load() == 1);
    }(pool));
}

TEST_CASE("submit: fire-and-forget runs the call, and an error nobody retrieved reaches the exception handler",
          "[submit][errors]") {
    thread_pool pool({.workers = 1, .name = "forget"});
    event_loop loop;
    std::vector<exception_context> seen;
    loop.set_exception_handler([&seen](const exception_context& c) { seen.push_back(c); });
    std::atomic<int> ran{0};
    loop.run_until_complete([](thread_pool& pool, std::atomic<int>& ran, std::vector<exception_context>& s) -> task<> {
        submit(pool, [&ran] { ran.fetch_add(1); }); // discarded: still runs
        submit(pool, [&ran] {
            ran.fetch_add(1);
            throw custom_error("nobody listened");
        });
        bool both = co_await eventually([&] { return ran.load() == 2 && !s.empty(); });
        REQUIRE(both);
    }(pool, ran, seen));
    REQUIRE(seen.size() == 1u);
    CHECK(seen[0].message.find("submitted call") != std::string::npos);
    std::string what;
    try {
        std::rethrow_exception(seen[0].exception);
    } catch (const custom_error& e) {
        what = e.what();
    } catch (...) {
    }
    CHECK(what == "nobody listened");
}

TEST_CASE("submit: an awaited or inspected error is not reported", "[submit][errors]") {
    thread_pool pool({.workers = 1, .name = "seen"});
    event_loop loop;
    int reports = 0;
    loop.set_exception_handler([&reports](const exception_context&) { ++reports; });
    loop.run_until_complete([](thread_pool& pool) -> task<> {
        auto a = submit(pool, []() -> int { throw custom_error("a"); });
        REQUIRE_THROWS_AS(co_await a, custom_error);
        auto b = submit(pool, []() -> int { throw custom_error("b"); });
        bool done = co_await eventually([&] { return b.done(); });
        REQUIRE(done);
        CHECK(b.exception());
    }(pool));
    CHECK(reports == 0);
}

TEST_CASE("submit: cancel() drops a queued call on a one-worker pool; it never runs", "[submit][cancel]") {
    thread_pool pool({.workers = 1, .name = "cancelq"});
    gate g;
    std::atomic<int> ran{0};
    run([](thread_pool& pool, gate& g, std::atomic<int>& ran) -> task<> {
        auto busy = submit(pool, [&g] { g.pass(); });
        bool entered = co_await eventually([&] { return g.entered.load() == 1; });
        REQUIRE(entered);
        auto queued = submit(pool, [&ran] { ran.fetch_add(1); });
        CHECK(pool.stats().queued == 1);
        CHECK(queued.cancel());
        CHECK(queued.cancelled());
        CHECK_FALSE(queued.cancel());
        REQUIRE_THROWS_AS(co_await queued, cancelled_error);
        CHECK(pool.stats().queued == 0);
        g.open = true;
        co_await busy;
        co_await sleep(20ms); // a dropped call would have run by now
        CHECK(ran.load() == 0);
        CHECK(pool.stats().cancelled == 1);
    }(pool, g, ran));
}

TEST_CASE("submit: cancelling a running call asks it to stop and cancels the future at once", "[submit][cancel]") {
    thread_pool pool({.workers = 1, .name = "cancelr"});
    run([](thread_pool& pool) -> task<> {
        std::atomic<bool> started{false};
        std::atomic<bool> stop_seen{false};
        auto f = submit(pool, [&started, &stop_seen](std::stop_token st) {
            started = true;
            while (!st.stop_requested()) std::this_thread::sleep_for(100us);
            stop_seen = true;
            return 1;
        });
        bool running = co_await eventually([&] { return started.load(); });
        REQUIRE(running);
        CHECK(f.cancel());
        CHECK(f.cancelled());
        REQUIRE_THROWS_AS(co_await f, cancelled_error);
        bool stopped = co_await eventually([&] { return stop_seen.load(); });
        CHECK(stopped);
        bool idle = co_await eventually([&] { return pool.stats().busy == 0; });
        CHECK(idle);
    }(pool));
}

TEST_CASE("submit: cancelling a task that awaits the future cancels the call, as asyncio does", "[submit][cancel]") {
    thread_pool pool({.workers = 1, .name = "cancelt"});
    gate g;
    std::atomic<int> ran{0};
    run([](thread_pool& pool, gate& g, std::atomic<int>& ran) -> task<> {
        auto busy = submit(pool, [&g] { g.pass(); });
        bool entered = co_await eventually([&] { return g.entered.load() == 1; });
        REQUIRE(entered);
        auto queued = submit(pool, [&ran] { ran.fetch_add(1); });
        auto waiter = create_task(outcome_of(queued));
        co_await sleep(1ms);
        waiter.cancel();
        int how = co_await waiter;
        CHECK(how == 2);
        CHECK(queued.cancelled());
        g.open = true;
        co_await busy;
        co_await sleep(20ms);
        CHECK(ran.load() == 0);
    }(pool, g, ran));
}

TEST_CASE("submit: shutdown(wait, cancel_pending) fails queued futures with executor_closed; then submit throws",
          "[submit][shutdown]") {
    thread_pool pool({.workers = 1, .name = "shut"});
    gate g;
    std::atomic<int> ran{0};
    run([](thread_pool& pool, gate& g, std::atomic<int>& ran) -> task<> {
        auto busy = submit(pool, [&g] {
            g.pass();
            return 3;
        });
        bool entered = co_await eventually([&] { return g.entered.load() == 1; });
        REQUIRE(entered);
        std::vector<future<void>> queued;
        for (int i = 0; i < 3; ++i) queued.push_back(submit(pool, [&ran] { ran.fetch_add(1); }));
        pool.shutdown(false, true);
        for (auto& q : queued) REQUIRE_THROWS_AS(co_await q, executor_closed);
        for (auto& q : queued) CHECK_FALSE(q.cancelled());
        g.open = true;
        int r = co_await busy; // the running call still completes
        CHECK(r == 3);
        CHECK(ran.load() == 0);
        REQUIRE_THROWS_AS(submit(pool, [] { return 1; }), executor_closed);
    }(pool, g, ran));
}

TEST_CASE("submit: a loop torn down while a submitted call runs cancels its future and leaks nothing",
          "[submit][teardown]") {
    thread_pool pool({.workers = 1, .name = "teardown"});
    gate g;
    std::atomic<bool> finished{false};
    future<int> kept = [&] {
        event_loop loop;
        return loop.run_until_complete([](thread_pool& pool, gate& g, std::atomic<bool>& fin) -> task<future<int>> {
            auto f = submit(pool, [&g, &fin] {
                g.pass();
                fin = true;
                return 1;
            });
            bool entered = co_await eventually([&] { return g.entered.load() == 1; });
            REQUIRE(entered);
            co_return f; // the loop goes away with the call still running
        }(pool, g, finished));
    }();
    CHECK(kept.done());
    CHECK(kept.cancelled());
    g.open = true;
    pool.shutdown(true, false); // joins the worker
    CHECK(finished.load());     // it finished the call; the result went nowhere
}

TEST_CASE("submit: run() ending with a submitted call still queued cancels it; it never runs", "[submit][teardown]") {
    thread_pool pool({.workers = 1, .name = "leftover"});
    gate g;
    std::atomic<int> ran{0};
    run([](thread_pool& pool, gate& g, std::atomic<int>& ran) -> task<> {
        submit(pool, [&g] { g.pass(); });
        bool entered = co_await eventually([&] { return g.entered.load() == 1; });
        REQUIRE(entered);
        submit(pool, [&ran] { ran.fetch_add(1); }); // fire-and-forget, still queued when main ends
    }(pool, g, ran));
    g.open = true;
    pool.shutdown(true, false);
    CHECK(ran.load() == 0);
}

TEST_CASE("submit: a bounded pool's call waits for a slot without suspending the submitter", "[submit]") {
    thread_pool pool({.workers = 1, .max_queued = 1, .name = "bounded"});
    gate g;
    run([](thread_pool& pool, gate& g) -> task<> {
        auto busy = submit(pool, [&g] { g.pass(); });
        bool entered = co_await eventually([&] { return g.entered.load() == 1; });
        REQUIRE(entered);
        auto second = submit(pool, [] { return 2; }); // takes the one slot
        auto third = submit(pool, [] { return 3; });  // waits for a slot; submit still returns
        CHECK(pool.stats().queued == 1);
        g.open = true;
        co_await busy;
        int b = co_await second;
        int c = co_await third;
        CHECK(b == 2);
        CHECK(c == 3);
    }(pool, g));
}

TEST_CASE("submit: an executor of the user's gets the call inside submit; cancel and drop follow its rules",
          "[submit][user_executor]") {
    offload_test::user_executor ex;
    run([](offload_test::user_executor& ex) -> task<> {
        ex.hold(true);
        std::atomic<int> ran{0};
        auto f = submit(
            ex,
            [&ran](int x) {
                ran.fetch_add(1);
                return x * 2;
            },
            21);
        CHECK(ex.queued() == 1); // execute() was called before submit returned
        auto dropped = submit(ex, [&ran] { ran.fetch_add(1); });
        CHECK(dropped.cancel()); // withdrawn: does nothing when the executor runs it
        ex.hold(false);
        int v = co_await f;
        CHECK(v == 42);
        REQUIRE_THROWS_AS(co_await dropped, cancelled_error);
        bool drained = co_await eventually([&] { return ex.queued() == 0; });
        REQUIRE(drained);
        co_await sleep(10ms);
        CHECK(ran.load() == 1);

        ex.hold(true);
        auto lost = submit(ex, [] { return 1; });
        ex.drop_queued(); // destroyed unrun
        REQUIRE_THROWS_AS(co_await lost, executor_closed);
        ex.hold(false);
    }(ex));
}

TEST_CASE("submit: without a running loop it is a std::logic_error, and nothing runs", "[submit][misuse]") {
    thread_pool pool({.workers = 1, .name = "noloop"});
    std::atomic<int> ran{0};
    REQUIRE_THROWS_AS(submit(pool, [&ran] { ran.fetch_add(1); }), std::logic_error);
    pool.shutdown(true, false);
    CHECK(ran.load() == 0);
}
