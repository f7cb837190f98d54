// Tests of create_task and task_handle<T>: scheduling, results for many
// awaiters, cancellation (cleanup, before the first step, swallowed, nested),
// unobserved exceptions, and the capture-keeping create_task(callable, args...).
#include <offload/task_handle.hpp>

#include <offload/event.hpp>
#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>

#include <counted.hpp>

#include "alloc_count.hpp"
#include "task_helpers.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::counted;
using offload::test::value_after;

namespace {

struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// What a task saw of its own cancellation.
struct probe {
    bool started = false;
    bool saw_cancel = false;
    int live_in_catch = -1; // counted::live() inside the catch block
    bool finished = false;
};

task<> set_flag(bool& flag) {
    flag = true;
    co_return;
}

task<int> await_handle(task_handle<int> h) {
    int v = co_await h;
    co_return v;
}

task<> sleep_forever_with_cleanup(probe& p) {
    counted guard;
    p.started = true;
    try {
        co_await sleep(24h);
    } catch (const cancelled_error&) {
        p.saw_cancel = true;
        p.live_in_catch = counted::live();
        throw;
    }
    p.finished = true;
}

task<> body_with_counted_param(counted /*param*/, bool& ran) {
    ran = true;
    co_return;
}

task<int> swallows_cancel(probe& p) {
    p.started = true;
    try {
        co_await sleep(24h);
    } catch (const cancelled_error&) {
        p.saw_cancel = true;
    }
    co_return 42;
}

task<> await_void_handle(task_handle<> h) { co_await h; }

task<> throws_after_yield(std::string what) {
    co_await sleep(0ms);
    throw my_error(what);
}

// Runs `t` on `loop` until it finishes, cancelling nothing else.
template <class T>
T drive(event_loop& loop, task<T> t) {
    return loop.run_until_complete(std::move(t));
}

} // namespace

TEST_CASE("task_handle: create_task runs the task without an await, once the creator suspends", "[task_handle]") {
    event_loop loop;
    drive(loop, []() -> task<> {
        bool ran = false;
        auto h = create_task(set_flag(ran));
        REQUIRE_FALSE(ran); // scheduled, not started inline
        co_await sleep(0ms);
        REQUIRE(ran);
        REQUIRE(h.done());
    }());
}

TEST_CASE("task_handle: awaiting the handle gives the task's value", "[task_handle]") {
    event_loop loop;
    int v = drive(loop, []() -> task<int> {
        auto h = create_task(value_after(5, 1ms));
        int r = co_await h;
        co_return r;
    }());
    REQUIRE(v == 5);
}

TEST_CASE("task_handle: several tasks can await one handle and all get the value", "[task_handle]") {
    event_loop loop;
    std::vector<int> got = drive(loop, []() -> task<std::vector<int>> {
        auto producer = create_task(value_after(7, 5ms));
        std::vector<task_handle<int>> waiters;
        for (int i = 0; i < 3; ++i) waiters.push_back(create_task(await_handle(producer)));
        std::vector<int> out;
        for (auto& w : waiters) {
            int v = co_await w;
            out.push_back(v);
        }
        int direct = co_await producer; // and once more, directly
        out.push_back(direct);
        co_return out;
    }());
    REQUIRE(got == std::vector<int>{7, 7, 7, 7});
}

TEST_CASE("task_handle: name() is the name given to create_task", "[task_handle]") {
    event_loop loop;
    drive(loop, []() -> task<> {
        auto named = create_task(value_after(1, 0ms), "worker-1");
        auto unnamed = create_task(value_after(2, 0ms));
        REQUIRE(named.name() == "worker-1");
        REQUIRE(unnamed.name().empty());
        co_await named;
        co_await unnamed;
    }());
}

TEST_CASE("task_handle: done() and cancelled() follow the task's life", "[task_handle]") {
    event_loop loop;
    drive(loop, []() -> task<> {
        auto ok = create_task(value_after(1, 1ms));
        REQUIRE_FALSE(ok.done());
        REQUIRE_FALSE(ok.cancelled());
        co_await ok;
        REQUIRE(ok.done());
        REQUIRE_FALSE(ok.cancelled());

        auto doomed = create_task(value_after(1, 24h));
        co_await sleep(0ms);
        REQUIRE(doomed.cancel());
        REQUIRE_FALSE(doomed.done()); // it unwinds on its next step
        REQUIRE_THROWS_AS(co_await doomed, cancelled_error);
        REQUIRE(doomed.done());
        REQUIRE(doomed.cancelled());
    }());
}

TEST_CASE("task_handle: cancelling a sleeping task runs its cleanup and the awaiter gets cancelled_error",
          "[task_handle][cancel]") {
    counted::reset();
    probe p;
    event_loop loop;
    drive(loop, [](probe& pr) -> task<> {
        auto h = create_task(sleep_forever_with_cleanup(pr), "sleeper");
        co_await sleep(0ms); // let it reach its sleep
        REQUIRE(pr.started);
        REQUIRE(counted::live() == 1);
        REQUIRE(h.cancel());
        bool got_cancelled = false;
        try {
            co_await h;
        } catch (const cancelled_error&) {
            got_cancelled = true;
        }
        REQUIRE(got_cancelled);
        REQUIRE(counted::live() == 0); // the frame is gone once the awaiter resumes
        REQUIRE(h.cancelled());
    }(p));
    REQUIRE(p.saw_cancel);
    REQUIRE(p.live_in_catch == 1); // the catch block ran while the RAII object was alive
    REQUIRE_FALSE(p.finished);
    REQUIRE(counted::live() == 0);
    REQUIRE(counted::double_destroyed() == 0);
}

TEST_CASE("task_handle: a task cancelled before its first step never runs its body", "[task_handle][cancel]") {
    counted::reset();
    bool ran = false;
    event_loop loop;
    drive(loop, [](bool& r) -> task<> {
        auto h = create_task(body_with_counted_param(counted{}, r));
        REQUIRE(h.cancel());
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        REQUIRE(h.cancelled());
    }(ran));
    REQUIRE_FALSE(ran);
    REQUIRE(counted::live() == 0);
}

TEST_CASE("task_handle: a task that catches cancelled_error and returns a value gives the value",
          "[task_handle][cancel]") {
    probe p;
    event_loop loop;
    int v = drive(loop, [](probe& pr) -> task<int> {
        auto h = create_task(swallows_cancel(pr));
        co_await sleep(0ms);
        REQUIRE(h.cancel());
        int r = co_await h;
        REQUIRE_FALSE(h.cancelled());
        co_return r;
    }(p));
    REQUIRE(p.saw_cancel);
    REQUIRE(v == 42);
}

TEST_CASE("task_handle: cancel() on a finished task returns false", "[task_handle][cancel]") {
    event_loop loop;
    drive(loop, []() -> task<> {
        auto h = create_task(value_after(3, 0ms));
        int v = co_await h;
        REQUIRE(v == 3);
        REQUIRE_FALSE(h.cancel());
        REQUIRE_FALSE(h.cancelled());
        REQUIRE_FALSE(task_handle<int>{}.cancel()); // an empty handle has nothing to cancel
    }());
}

TEST_CASE("task_handle: cancelling a task that awaits another task's handle cancels the inner one too",
          "[task_handle][cancel]") {
    counted::reset();
    probe p;
    event_loop loop;
    drive(loop, [](probe& pr) -> task<> {
        auto inner = create_task(sleep_forever_with_cleanup(pr), "inner");
        auto outer = create_task(await_void_handle(inner), "outer");
        co_await sleep(0ms);
        co_await sleep(0ms);
        REQUIRE(pr.started);
        REQUIRE(outer.cancel());
        REQUIRE_THROWS_AS(co_await outer, cancelled_error);
        REQUIRE(inner.done());
        REQUIRE(inner.cancelled());
        REQUIRE(outer.cancelled());
    }(p));
    REQUIRE(p.saw_cancel);
    REQUIRE(counted::live() == 0);
}

TEST_CASE("task_handle: an unawaited task's exception reaches the exception handler once, when its last handle "
          "is dropped",
          "[task_handle][errors]") {
    std::vector<exception_context> seen;
    event_loop loop;
    loop.set_exception_handler([&seen](const exception_context& c) { seen.push_back(c); });
    drive(loop, [](std::vector<exception_context>& s) -> task<> {
        {
            auto h = create_task(throws_after_yield("lost"), "doomed");
            auto copy = h;
            co_await sleep(0ms);
            co_await sleep(0ms);
            co_await sleep(0ms);
            REQUIRE(h.done());
            REQUIRE(s.empty()); // handles remain: someone may still await it
            h = task_handle<>{};
            REQUIRE(s.empty()); // one handle left
        }
        REQUIRE(s.size() == 1u);
        co_await sleep(0ms);
    }(seen));
    REQUIRE(seen.size() == 1u);
    REQUIRE(seen[0].task_name == "doomed");
    REQUIRE_THROWS_AS(std::rethrow_exception(seen[0].exception), my_error);
}

TEST_CASE("task_handle: an exception of a task created without keeping a handle reaches the exception handler once",
          "[task_handle][errors]") {
    std::vector<exception_context> seen;
    event_loop loop;
    loop.set_exception_handler([&seen](const exception_context& c) { seen.push_back(c); });
    drive(loop, []() -> task<> {
        create_task(throws_after_yield("orphan failure"), "orphan");
        for (int i = 0; i < 4; ++i) co_await sleep(0ms);
    }());
    REQUIRE(seen.size() == 1u);
    REQUIRE(seen[0].task_name == "orphan");
    std::string what;
    try {
        std::rethrow_exception(seen[0].exception);
    } catch (const std::exception& e) {
        REQUIRE(typeid(e) == typeid(my_error));
        what = e.what();
    }
    REQUIRE(what == "orphan failure");
}

TEST_CASE("task_handle: an awaited task's exception is not reported to the exception handler",
          "[task_handle][errors]") {
    std::vector<exception_context> seen;
    event_loop loop;
    loop.set_exception_handler([&seen](const exception_context& c) { seen.push_back(c); });
    drive(loop, []() -> task<> {
        auto h = create_task(throws_after_yield("seen"), "observed");
        REQUIRE_THROWS_AS(co_await h, my_error);
    }());
    REQUIRE(seen.empty());
}

TEST_CASE("task_handle: create_task without a running loop throws std::logic_error", "[task_handle][misuse]") {
    bool ran = false;
    REQUIRE_THROWS_AS(create_task(set_flag(ran)), std::logic_error);
    REQUIRE_FALSE(ran);
}

TEST_CASE("task_handle: create_task(callable, args...) keeps a capturing lambda alive while the task runs",
          "[task_handle][lifetime]") {
    event_loop loop;
    std::string got = drive(loop, []() -> task<std::string> {
        std::string out;
        // The lambda is a temporary; its capture must live in the task's frame.
        // (Long enough to defeat the small-string buffer, so ASan sees a use after free.)
        auto h = create_task(
            [s = std::string(64, 'x')](std::string* dst, int n) -> task<> {
                co_await sleep(1ms);
                *dst = s + std::to_string(n);
            },
            &out, 3);
        co_await h;
        co_return out;
    }());
    REQUIRE(got == std::string(64, 'x') + "3");
}

TEST_CASE("task_handle: awaiting a task while a cancellation is pending cancels that task and waits for it",
          "[task_handle][cancel]") {
    // asyncio: the pending cancellation goes to the future being awaited.
    bool inner_unwound = false;
    run([](bool& unwound) -> task<> {
        task_handle<> self;
        task_handle<> inner;
        auto outer = create_task(
            [](task_handle<>& self, task_handle<>& inner, bool& unwound) -> task<> {
                inner = create_task([](bool& u) -> task<> {
                    try {
                        co_await sleep(10s);
                    } catch (const cancelled_error&) {
                        u = true; // it was cancelled, and unwinds
                        throw;
                    }
                }(unwound));
                co_await sleep(0s); // the inner task starts and suspends in its sleep
                self.cancel();      // while running: the request is pending
                co_await inner;
            },
            std::ref(self), std::ref(inner), std::ref(unwound));
        self = outer;
        REQUIRE_THROWS_AS(co_await outer, cancelled_error);
        CHECK(inner.done());
        CHECK(inner.cancelled());
    }(inner_unwound));
    CHECK(inner_unwound);
}

// --- cancellation requests are never lost (issue 10, item 5) ------------------

TEST_CASE("task_handle: a task that cancels itself and returns without another await ends cancelled",
          "[task_handle][cancel]") {
    run([]() -> task<> {
        bool answered = false;
        auto h = create_task(
            [](bool& answered) -> task<int> {
                answered = current_task().cancel(); // true: the task has not finished
                co_return 7;                        // no await after the request
            },
            std::ref(answered));
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK(answered); // and cancel() told the truth: the task did end cancelled
        CHECK(h.cancelled());
    }());
}

TEST_CASE("task_handle: a cancel that arrives while the task's wake-up is queued is kept even if it then returns",
          "[task_handle][cancel]") {
    run([]() -> task<> {
        event ev;
        auto h = create_task(
            [](event& ev) -> task<int> {
                co_await ev.wait(); // woken by set(); the cancel arrives before it runs
                co_return 1;        // returns without another await
            },
            std::ref(ev));
        co_await sleep(0s); // h waits on the event
        ev.set();           // h's wake-up is queued
        REQUIRE(h.cancel());
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK(h.cancelled());
    }());
}

TEST_CASE("task_handle: a task that catches the cancellation and returns keeps its value", "[task_handle][cancel]") {
    run([]() -> task<> {
        auto h = create_task([]() -> task<int> {
            try {
                co_await sleep(10s);
            } catch (const cancelled_error&) {
                co_return 5; // the request was delivered: nothing is pending
            }
            co_return 0;
        });
        co_await sleep(0s);
        REQUIRE(h.cancel());
        int v = co_await h;
        CHECK(v == 5);
        CHECK_FALSE(h.cancelled());
    }());
}

TEST_CASE("task_handle: cancel(message) reaches the cancelled_error inside the task and at its awaiters",
          "[task_handle][cancel]") {
    run([]() -> task<> {
        std::string inside;
        auto h = create_task(
            [](std::string& inside) -> task<> {
                try {
                    co_await sleep(10s);
                } catch (const cancelled_error& e) {
                    inside = e.what();
                    throw;
                }
            },
            std::ref(inside));
        co_await sleep(0s);
        REQUIRE(h.cancel("shutting down"));
        std::string outside;
        try {
            co_await h;
        } catch (const cancelled_error& e) {
            outside = e.what();
        }
        CHECK(inside == "shutting down");
        CHECK(outside == "shutting down");
    }());
}

TEST_CASE("task_handle: cancelling() counts requests and uncancel() takes one back", "[task_handle][cancel]") {
    run([]() -> task<> {
        auto h = create_task(value_after(3, 20ms));
        CHECK(h.cancelling() == 0);
        h.cancel();
        h.cancel();
        CHECK(h.cancelling() == 2);
        CHECK(h.uncancel() == 1);
        CHECK(h.uncancel() == 0); // every request taken back: the pending one is withdrawn
        int v = co_await h;       // so the task runs to its end
        CHECK(v == 3);
    }());
}

TEST_CASE("current_task: names the running task and is empty outside one", "[task_handle][current_task]") {
    CHECK_FALSE(current_task());
    run([]() -> task<> {
        task_ref seen;
        auto h = create_task(
            [](task_ref& seen) -> task<> {
                seen = current_task();
                co_return;
            },
            std::ref(seen));
        co_await h;
        CHECK(seen == h);
        CHECK(current_task()); // the task run() drives is a task too
        CHECK_FALSE(current_task() == h);
        auto named = create_task([]() -> task<std::string> { co_return current_task().name(); }(), "worker-7");
        std::string name = co_await named;
        CHECK(name == "worker-7");
    }());
}

// --- allocations per scheduled task ----------------------------------------------

namespace {

task<> trivial_body() { co_return; }
task<int> suspending_body(event& e) {
    co_await e.wait();
    co_return 7;
}

} // namespace

TEST_CASE("create_task: two heap blocks per task (its state and the body's frame), no driving frame",
          "[task_handle][memory]") {
    run([]() -> task<> {
        constexpr long n = 200;
        std::vector<task_handle<>> trivial;
        std::vector<task_handle<int>> waiting;
        trivial.reserve(n);
        waiting.reserve(n);
        event e;
        // Warm up: the loop's queues reach their size.
        for (long i = 0; i < n; ++i) trivial.push_back(create_task(trivial_body()));
        for (auto& h : trivial) co_await h;
        trivial.clear();

        long before = test::allocations_here();
        for (long i = 0; i < n; ++i) trivial.push_back(create_task(trivial_body()));
        for (auto& h : trivial) co_await h;
        long trivial_blocks = test::allocations_here() - before;

        before = test::allocations_here();
        for (long i = 0; i < n; ++i) waiting.push_back(create_task(suspending_body(e)));
        co_await sleep(0ms); // every task runs to its wait
        long suspended_blocks = test::allocations_here() - before;
        e.set();
        int sum = 0;
        for (auto& h : waiting) sum += co_await h;
        CHECK(sum == 7 * n);

        // The body's frame and the task_state; a third block per task (a
        // coroutine driving the body) would make these >= 3 n.
        if (OFFLOAD_TEST_COUNTS_ALLOCATIONS) {
            CHECK(trivial_blocks <= 2 * n + 8);
            CHECK(suspended_blocks <= 2 * n + 8);
        }
    }());
}
