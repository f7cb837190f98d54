// Tests of as_completed(handles, timeout) (asyncio.as_completed): completion
// order, exceptions in place, the timeout, duplicates, awaiting items out of
// order or concurrently, and that a cancelled iteration leaves the tasks
// running without stale listeners.
#include <offload/as_completed.hpp>

#include <offload/gather.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>

#include "task_helpers.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <set>
#include <stdexcept>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::value_after;

namespace {

struct boom : std::runtime_error {
    using std::runtime_error::runtime_error;
};

task<int> fail_after(std::chrono::milliseconds d) {
    co_await sleep(d);
    throw boom("boom");
}

// The vector of handles, built outside the coroutine: g++ 12 miscompiles an
// initializer list inside a co_await expression ("array used as initializer").
template <class T, class... H>
std::vector<task_handle<T>> hs(task_handle<T> first, H... rest) {
    return std::vector<task_handle<T>>{first, rest...};
}

} // namespace

TEST_CASE("as_completed: results come in completion order, not input order", "[as_completed]") {
    run([]() -> task<> {
        auto c = create_task(value_after(3, 60ms));
        auto a = create_task(value_after(1, 5ms));
        auto b = create_task(value_after(2, 25ms));
        std::vector<int> got;
        for (auto next : as_completed(hs(c, a, b))) {
            int v = co_await next;
            got.push_back(v);
        }
        CHECK(got == std::vector<int>{1, 2, 3});
        // Again, on finished tasks: at once, in input order.
        got.clear();
        for (auto next : as_completed(hs(c, a, b))) {
            int v = co_await next;
            got.push_back(v);
        }
        CHECK(got == std::vector<int>{3, 1, 2});
    }());
}

TEST_CASE("as_completed: the order is recorded from the call on, even while nobody awaits", "[as_completed]") {
    run([]() -> task<> {
        auto slow = create_task(value_after(2, 30ms));
        auto fast = create_task(value_after(1, 5ms));
        auto range = as_completed(hs(slow, fast));
        co_await sleep(100ms); // both end before the first await
        std::vector<int> got;
        for (auto next : range) {
            int v = co_await next;
            got.push_back(v);
        }
        CHECK(got == std::vector<int>{1, 2});
    }());
}

TEST_CASE("as_completed: an exception is rethrown at its place in the order", "[as_completed]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 5ms));
        auto b = create_task(fail_after(20ms));
        auto c = create_task(value_after(3, 40ms));
        std::vector<int> got;
        for (auto next : as_completed(hs(c, b, a))) {
            try {
                int v = co_await next;
                got.push_back(v);
            } catch (const boom&) {
                got.push_back(-1);
            }
        }
        CHECK(got == std::vector<int>{1, -1, 3});
    }());
}

TEST_CASE("as_completed: a cancelled task gives cancelled_error at its place", "[as_completed]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 10s));
        auto b = create_task(value_after(2, 30ms));
        a.cancel();
        auto r = as_completed(hs(a, b));
        auto it = r.begin();
        REQUIRE_THROWS_AS(co_await *it, cancelled_error);
        ++it;
        int v = co_await *it;
        CHECK(v == 2);
    }());
}

TEST_CASE("as_completed: after the timeout the remaining awaits throw timeout_error; the tasks keep running",
          "[as_completed]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 10ms));
        auto b = create_task(value_after(2, 10s));
        auto t0 = std::chrono::steady_clock::now();
        std::vector<int> got;
        int timeouts = 0;
        for (auto next : as_completed(hs(a, b), 100ms)) {
            try {
                int v = co_await next;
                got.push_back(v);
            } catch (const timeout_error&) {
                ++timeouts;
            }
        }
        auto took = std::chrono::steady_clock::now() - t0;
        CHECK(got == std::vector<int>{1});
        CHECK(timeouts == 1);
        CHECK(took >= 100ms);
        CHECK(took < 5s);
        CHECK_FALSE(b.done()); // not cancelled by the timeout
        CHECK(b.cancel());
    }());
}

TEST_CASE("as_completed: results finished before the timeout are still given after it", "[as_completed]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 1ms));
        auto b = create_task(value_after(2, 10s));
        auto r = as_completed(hs(b, a), 20ms);
        co_await sleep(60ms); // a finished, then the timeout passed
        auto it = r.begin();
        int v = co_await *it;
        CHECK(v == 1);
        ++it;
        REQUIRE_THROWS_AS(co_await *it, timeout_error);
        b.cancel();
    }());
}

TEST_CASE("as_completed: an unused timeout changes nothing", "[as_completed]") {
    run([]() -> task<> {
        auto a = create_task(value_after(7, 1ms));
        for (auto next : as_completed(hs(a), 10s)) {
            int v = co_await next;
            CHECK(v == 7);
        }
    }());
}

TEST_CASE("as_completed: any item gives the next result, whichever is awaited first", "[as_completed]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 5ms));
        auto b = create_task(value_after(2, 30ms));
        auto r = as_completed(hs(a, b));
        std::vector<next_completion<int>> items(r.begin(), r.end());
        REQUIRE(items.size() == 2u);
        int x = co_await items[1];
        CHECK(x == 1);
        int y = co_await items[0];
        CHECK(y == 2);
    }());
}

TEST_CASE("as_completed: items can be awaited concurrently", "[as_completed]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 10ms));
        auto b = create_task(value_after(2, 10ms));
        auto r = as_completed(hs(a, b));
        std::vector<next_completion<int>> items(r.begin(), r.end());
        auto [x, y] = co_await gather(items[0], items[1]);
        CHECK(std::set<int>{x, y} == std::set<int>{1, 2});
    }());
}

TEST_CASE("as_completed: a task given twice yields once", "[as_completed]") {
    run([]() -> task<> {
        auto ham = create_task(value_after(1, 1ms));
        auto spam = create_task(value_after(2, 2ms));
        auto r = as_completed(hs(ham, ham, spam));
        CHECK(r.size() == 2u);
        std::multiset<int> got;
        for (auto next : r) {
            int v = co_await next;
            got.insert(v);
        }
        CHECK(got == std::multiset<int>{1, 2});
    }());
}

TEST_CASE("as_completed: an empty vector gives an empty range", "[as_completed]") {
    run([]() -> task<> {
        int n = 0;
        for (auto next : as_completed(std::vector<task_handle<int>>{})) {
            (void)next;
            ++n;
        }
        CHECK(n == 0);
        co_return;
    }());
}

TEST_CASE("as_completed: bad use is refused with std::logic_error", "[as_completed]") {
    // No loop on this thread.
    CHECK_THROWS_AS(as_completed(std::vector<task_handle<int>>{}), std::logic_error);
    run([]() -> task<> {
        // An empty handle.
        REQUIRE_THROWS_AS(as_completed(std::vector<task_handle<int>>(1)), std::logic_error);
        // More awaits than tasks.
        auto a = create_task(value_after(1, 1ms));
        auto next = *as_completed(hs(a)).begin();
        int v = co_await next;
        CHECK(v == 1);
        REQUIRE_THROWS_AS(co_await next, std::logic_error);
    }());
}

TEST_CASE("as_completed: move-only and void results", "[as_completed]") {
    run([]() -> task<> {
        auto p = create_task([]() -> task<std::unique_ptr<int>> {
            co_await sleep(1ms);
            co_return std::make_unique<int>(9);
        }());
        for (auto next : as_completed(hs(p))) {
            std::unique_ptr<int> v = co_await next;
            REQUIRE(v);
            CHECK(*v == 9);
        }
        auto q = create_task([]() -> task<> { co_await sleep(1ms); }());
        int n = 0;
        for (auto next : as_completed(hs(q))) {
            co_await next;
            ++n;
        }
        CHECK(n == 1);
    }());
}

TEST_CASE("as_completed: a cancelled await uses up no result and leaves the tasks running", "[as_completed]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 30ms));
        auto w = create_task(
            [](task_handle<int> a) -> task<int> {
                auto r = as_completed(hs(a));
                auto next = *r.begin();
                bool cancelled = false;
                try {
                    co_await next;
                } catch (const cancelled_error&) {
                    cancelled = true;
                }
                CHECK(cancelled);
                int v = co_await next; // the one result is still there
                co_return v;
            },
            a);
        co_await sleep(5ms);
        w.cancel();
        int v = co_await w;
        CHECK(v == 1);
    }());
}

TEST_CASE("as_completed: cancelling the iterating task drops its listeners; the tasks finish later", "[as_completed]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 5ms));
        auto b = create_task(value_after(2, 40ms));
        auto c = create_task(fail_after(60ms));
        auto w = create_task(
            [](std::vector<task_handle<int>> handles) -> task<> {
                for (auto next : as_completed(std::move(handles), 10s)) {
                    int v = co_await next;
                    (void)v;
                }
            },
            hs(a, b, c));
        co_await sleep(20ms); // a was handed out; b and c still run
        w.cancel();
        REQUIRE_THROWS_AS(co_await w, cancelled_error);
        CHECK(a.done());
        CHECK_FALSE(b.done());
        // b and c now end with nobody listening (ASan would see a stale listener).
        int v = co_await b;
        CHECK(v == 2);
        REQUIRE_THROWS_AS(co_await c, boom);
    }());
}

TEST_CASE("as_completed: an await cancelled after its result was handed over, before it ran, gives the result back",
          "[as_completed][cancel]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 5ms));
        auto b = create_task(value_after(2, 10s));
        auto w = std::make_shared<task_handle<int>>();
        // Listens to a before as_completed does: runs first when a ends, and
        // cancels w after a's result was handed to it but before w runs.
        auto canceller = create_task(
            [](task_handle<int> a, std::shared_ptr<task_handle<int>> w) -> task<> {
                co_await a;
                w->cancel();
            },
            a, w);
        co_await sleep(0s);
        auto r = std::make_shared<as_completed_range<int>>(as_completed(hs(a, b)));
        *w = create_task(
            [](std::shared_ptr<as_completed_range<int>> r) -> task<int> { co_return co_await *r->begin(); }, r);
        REQUIRE_THROWS_AS(co_await *w, cancelled_error);
        co_await canceller;
        int v = co_await *r->begin(); // the result went back: the next await gets it
        CHECK(v == 1);
        b.cancel();
    }());
}
