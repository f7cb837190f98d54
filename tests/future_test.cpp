// Tests of future<T>: settling once (value, error, cancel), several awaiters,
// future<void>, misuse, asyncio's cancellation rules (cancelling an awaiting
// task cancels the future), errors nobody retrieved, move-only results, and
// teardown of a loop with tasks still waiting.
#include <offload/future.hpp>

#include <offload/event.hpp>
#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>
#include <offload/wait_for.hpp>

#include <counted.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::counted;

namespace {

struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

template <class T>
task<T> await_future(future<T> f) {
    co_return co_await f;
}

task<> await_void(future<> f) { co_await f; }

// Awaits `f` and records how it ended: 1 value, 2 cancelled_error, 3 anything else.
task<int> outcome_of(future<int> f) {
    try {
        co_await f;
        co_return 1;
    } catch (const cancelled_error&) {
        co_return 2;
    } catch (...) {
        co_return 3;
    }
}

std::string message_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return x.what();
    } catch (...) {
        return "?";
    }
}

} // namespace

TEST_CASE("future: set_result wakes every task awaiting it, each with the value", "[future]") {
    run([]() -> task<> {
        future<int> f;
        CHECK_FALSE(f.done());
        auto a = create_task(await_future(f));
        auto b = create_task(await_future(f));
        auto c = create_task(await_future(f));
        co_await sleep(0ms); // all three wait now
        CHECK_FALSE(a.done());
        f.set_result(42);
        CHECK(f.done());
        CHECK_FALSE(f.cancelled());
        int va = co_await a;
        int vb = co_await b;
        int vc = co_await c;
        CHECK(va == 42);
        CHECK(vb == 42);
        CHECK(vc == 42);
        CHECK(f.result() == 42);
        int again = co_await f; // a done future gives its value at once
        CHECK(again == 42);
    }());
}

TEST_CASE("future: a value set from a loop callback reaches the awaiting task", "[future]") {
    run([]() -> task<> {
        future<std::string> f;
        event_loop::current().call_later(5ms, [f]() mutable { f.set_result("late"); });
        std::string v = co_await f;
        CHECK(v == "late");
    }());
}

TEST_CASE("future: set_exception makes every awaiter rethrow it, with its type", "[future]") {
    run([]() -> task<> {
        future<int> f;
        auto a = create_task(await_future(f));
        auto b = create_task(await_future(f));
        co_await sleep(0ms);
        f.set_exception(my_error("broken"));
        REQUIRE_THROWS_AS(co_await a, my_error);
        REQUIRE_THROWS_AS(co_await b, my_error);
        CHECK(f.done());
        CHECK_FALSE(f.cancelled());
        CHECK_THROWS_AS(f.result(), my_error);
        auto e = f.exception();
        REQUIRE(e);
        CHECK(message_of(e) == "broken");
    }());
}

TEST_CASE("future<void>: set_result() wakes the awaiters; set_exception rethrows", "[future]") {
    run([]() -> task<> {
        future<> f;
        auto a = create_task(await_void(f));
        co_await sleep(0ms);
        CHECK_FALSE(a.done());
        f.set_result();
        co_await a;
        CHECK(f.done());
        f.result(); // does not throw
        CHECK_FALSE(f.exception());

        future<> g;
        g.set_exception(std::make_exception_ptr(std::out_of_range("range")));
        REQUIRE_THROWS_AS(co_await g, std::out_of_range);
    }());
}

TEST_CASE("future: settling twice, or after cancel, is a std::logic_error that says so", "[future][misuse]") {
    run([]() -> task<> {
        future<int> f;
        f.set_result(1);
        CHECK_THROWS_AS(f.set_result(2), std::logic_error);
        CHECK_THROWS_AS(f.set_exception(my_error("x")), std::logic_error);
        CHECK(f.result() == 1); // the first value stays

        future<int> g;
        CHECK(g.cancel());
        std::string what;
        try {
            g.set_result(3);
        } catch (const std::logic_error& e) {
            what = e.what();
        }
        CHECK(what.find("cancelled") != std::string::npos);
        CHECK(what.find("done()") != std::string::npos);

        future<int> h;
        CHECK_THROWS_AS(h.set_exception(std::exception_ptr{}), std::invalid_argument);
        CHECK_FALSE(h.done());
        CHECK_THROWS_AS(h.result(), std::logic_error); // not done: co_await it
        CHECK_FALSE(h.exception());

        future<int> moved;
        future<int> taker = std::move(moved);
        CHECK_THROWS_AS(moved.set_result(1), std::logic_error);
        CHECK_FALSE(moved.done());
        co_return;
    }());
}

TEST_CASE("future: cancel() wakes the awaiters with cancelled_error and returns false once done", "[future][cancel]") {
    run([]() -> task<> {
        future<int> f;
        auto a = create_task(outcome_of(f));
        auto b = create_task(outcome_of(f));
        co_await sleep(0ms);
        CHECK(f.cancel());
        CHECK(f.done());
        CHECK(f.cancelled());
        CHECK_FALSE(f.cancel());
        int oa = co_await a;
        int ob = co_await b;
        CHECK(oa == 2);
        CHECK(ob == 2);
        CHECK_THROWS_AS(f.result(), cancelled_error);
        auto e = f.exception();
        REQUIRE(e);
        CHECK_THROWS_AS(std::rethrow_exception(e), cancelled_error);

        future<int> done;
        done.set_result(5);
        CHECK_FALSE(done.cancel());
        CHECK_FALSE(done.cancelled());
    }());
}

TEST_CASE("future: cancelling a task that awaits a future cancels the future, as asyncio does", "[future][cancel]") {
    run([]() -> task<> {
        future<int> f;
        auto victim = create_task(outcome_of(f));
        auto bystander = create_task(outcome_of(f));
        co_await sleep(0ms);
        victim.cancel();
        int ov = co_await victim;
        CHECK(ov == 2);
        CHECK(f.cancelled()); // the future itself was cancelled...
        if (!f.done()) f.set_result(0); // (so that a wrong implementation fails instead of hanging)
        int ob = co_await bystander;
        CHECK(ob == 2); // ...so every task awaiting it got cancelled_error
    }());
}

TEST_CASE("future: a cancellation pending when a task starts to await goes to the future", "[future][cancel]") {
    run([]() -> task<> {
        future<int> f;
        auto victim = create_task(
            [](future<int> f) -> task<int> {
                current_task().cancel(); // running, so the request is pending at the next await
                co_return co_await outcome_of(f);
            },
            f);
        int ov = co_await victim;
        CHECK(ov == 2);
        CHECK(f.cancelled());
    }());
}

TEST_CASE("future: a task cancelled after the value arrived, before it resumed, ends cancelled; the future keeps "
          "the value",
          "[future][cancel]") {
    run([]() -> task<> {
        future<int> f;
        auto a = create_task(await_future(f));
        co_await sleep(0ms);
        f.set_result(7);
        a.cancel(); // a is woken (its resumption queued): the request is not lost, as asyncio
        REQUIRE_THROWS_AS(co_await a, cancelled_error);
        CHECK(a.cancelled());
        CHECK_FALSE(f.cancelled()); // and the value stays with the future
        CHECK(f.result() == 7);
    }());
}

TEST_CASE("future: wait_for cancels the future it times out on", "[future][cancel]") {
    run([]() -> task<> {
        future<int> f;
        REQUIRE_THROWS_AS(co_await wait_for(f, 5ms), timeout_error);
        CHECK(f.cancelled());
    }());
}

TEST_CASE("future: an error nobody retrieved goes to the exception handler when the last handle goes",
          "[future][errors]") {
    event_loop loop;
    std::vector<exception_context> seen;
    loop.set_exception_handler([&seen](const exception_context& c) { seen.push_back(c); });
    loop.run_until_complete([](std::vector<exception_context>& s) -> task<> {
        {
            future<int> f;
            auto copy = f;
            f.set_exception(my_error("lost"));
            f = future<int>{};
            CHECK(s.empty()); // a handle remains: someone may still look
        }
        REQUIRE(s.size() == 1u);
        CHECK(message_of(s[0].exception) == "lost");
        CHECK(s[0].message.find("future") != std::string::npos);

        { // retrieved: by an await, result() or exception()
            future<int> a, b, c;
            a.set_exception(my_error("a"));
            b.set_exception(my_error("b"));
            c.set_exception(my_error("c"));
            REQUIRE_THROWS_AS(co_await a, my_error);
            CHECK_THROWS_AS(b.result(), my_error);
            CHECK(c.exception());
        }
        { // a cancelled future is not an error
            future<int> d;
            d.cancel();
        }
        CHECK(s.size() == 1u);
    }(seen));
    CHECK(seen.size() == 1u);
}

TEST_CASE("future: a move-only result moves to the first taker; a second is a std::logic_error", "[future]") {
    run([]() -> task<> {
        future<std::unique_ptr<int>> f;
        f.set_result(std::make_unique<int>(9));
        auto p = co_await f;
        REQUIRE(p);
        CHECK(*p == 9);
        CHECK_THROWS_AS(f.result(), std::logic_error);
    }());
}

TEST_CASE("future: tearing down a loop with tasks awaiting a future destroys them and leaks nothing",
          "[future][teardown]") {
    counted::reset();
    {
        future<int> kept; // outlives the loop
        {
            event_loop loop;
            loop.run_until_complete([](future<int> f) -> task<> {
                create_task(
                    [](future<int> f, counted) -> task<> {
                        int v = co_await f;
                        (void)v;
                    },
                    f, counted{});
                co_await sleep(0ms);
            }(kept));
            CHECK(counted::live() > 0); // the waiter's frame is still there
        }
        CHECK(counted::live() == 0);
        CHECK(counted::double_destroyed() == 0);
        CHECK_FALSE(kept.done());
        kept.set_result(1); // no waiter left to wake
        CHECK(kept.result() == 1);
    }
}

TEST_CASE("future: a future can be made, settled and cancelled outside any loop", "[future]") {
    // A future may be made and settled outside any loop.
    future<int> f;
    f.set_result(3);
    CHECK(f.result() == 3);
    future<int> g;
    CHECK(g.cancel());
}
