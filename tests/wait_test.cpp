// Tests of wait(handles, return_when, timeout) (asyncio.wait): all_completed,
// first_completed, first_exception, the timeout, duplicates, bad input, and
// that neither a timeout nor a cancellation of the waiter cancels the tasks.
#include <offload/wait.hpp>

#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>

#include "task_helpers.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::value_after;

namespace {

struct zero_division : std::runtime_error {
    using std::runtime_error::runtime_error;
};

task<int> fail_after(std::chrono::milliseconds d) {
    co_await sleep(d);
    throw zero_division("err");
}

task<int> fail_now() {
    throw zero_division("at once");
    co_return 0;
}

// The vector of handles, built outside the coroutine: g++ 12 miscompiles an
// initializer list inside a co_await expression ("array used as initializer").
template <class T, class... H>
std::vector<task_handle<T>> hs(task_handle<T> first, H... rest) {
    return std::vector<task_handle<T>>{first, rest...};
}

template <class T>
bool same(const task_handle<T>& a, const task_handle<T>& b) {
    return detail::task_handle_access::state(a) == detail::task_handle_access::state(b);
}

template <class T>
bool contains(const std::vector<task_handle<T>>& v, const task_handle<T>& h) {
    return std::any_of(v.begin(), v.end(), [&](const task_handle<T>& x) { return same(x, h); });
}

} // namespace

TEST_CASE("wait: all_completed (the default) returns every task in done, in input order", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 10ms));
        auto b = create_task(value_after(2, 15ms));
        auto [done, pending] = co_await wait(hs(b, a));
        REQUIRE(done.size() == 2u);
        CHECK(same(done[0], b));
        CHECK(same(done[1], a));
        CHECK(pending.empty());
        CHECK(a.done());
        CHECK(b.done());
        // Again, on finished tasks: returns at once with the same split.
        auto again = co_await wait(hs(a, b));
        CHECK(again.done.size() == 2u);
        CHECK(again.pending.empty());
    }());
}

TEST_CASE("wait: a task given twice is waited for and returned once", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 1ms));
        auto b = create_task(value_after(2, 2ms));
        auto r = co_await wait(hs(a, a, b));
        CHECK(r.done.size() == 2u);
        CHECK(r.pending.empty());
        CHECK(a.result() + b.result() == 3);
    }());
}

TEST_CASE("wait: an empty set throws std::invalid_argument with a clear message", "[wait]") {
    run([]() -> task<> {
        REQUIRE_THROWS_AS(co_await wait(std::vector<task_handle<int>>{}), std::invalid_argument);
        bool said = false;
        try {
            co_await wait(std::vector<task_handle<int>>{}, return_when::first_completed);
        } catch (const std::invalid_argument& e) {
            said = std::string(e.what()).find("empty") != std::string::npos;
        }
        CHECK(said);
    }());
}

TEST_CASE("wait: an invalid return_when or an empty handle is refused", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 1ms));
        REQUIRE_THROWS_AS(co_await wait(hs(a), static_cast<return_when>(-1)), std::invalid_argument);
        REQUIRE_THROWS_AS(co_await wait(hs(a, task_handle<int>())), std::logic_error);
        co_await a;
    }());
}

TEST_CASE("wait: first_completed returns when the first task ends and leaves the others running", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 10s));
        auto b = create_task(value_after(2, 10ms));
        auto [done, pending] = co_await wait(hs(b, a), return_when::first_completed);
        REQUIRE(done.size() == 1u);
        CHECK(same(done[0], b));
        REQUIRE(pending.size() == 1u);
        CHECK(same(pending[0], a));
        CHECK_FALSE(a.done());
        CHECK_FALSE(a.cancelled());
        CHECK(b.result() == 2);
        a.cancel();
    }());
}

TEST_CASE("wait: tasks that finished before the waiter resumed are in done too", "[wait]") {
    run([]() -> task<> {
        // Both end in the same loop iteration; the first one ends the wait.
        auto a = create_task(value_after(1, 0ms));
        auto b = create_task(value_after(2, 0ms));
        auto r = co_await wait(hs(a, b), return_when::first_completed);
        CHECK(r.done.size() == 2u);
        CHECK(r.pending.empty());
    }());
}

TEST_CASE("wait: first_exception returns at once when a task has already failed", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 10s));
        auto b = create_task(fail_now());
        co_await sleep(0ms); // b runs and fails
        REQUIRE(b.done());
        auto t0 = std::chrono::steady_clock::now();
        auto [done, pending] = co_await wait(hs(b, a), return_when::first_exception);
        CHECK(std::chrono::steady_clock::now() - t0 < 5s);
        REQUIRE(done.size() == 1u);
        CHECK(same(done[0], b));
        REQUIRE(pending.size() == 1u);
        CHECK(same(pending[0], a));
        a.cancel();
        CHECK_THROWS_AS(b.result(), zero_division); // not raised by wait; still there
    }());
}

TEST_CASE("wait: first_exception returns when a task fails while waiting", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 10s));
        auto b = create_task(fail_after(10ms));
        auto [done, pending] = co_await wait(hs(b, a), return_when::first_exception);
        REQUIRE(done.size() == 1u);
        CHECK(same(done[0], b));
        CHECK(same(pending.at(0), a));
        CHECK_FALSE(a.done());
        CHECK(b.exception() != nullptr);
        a.cancel();
    }());
}

TEST_CASE("wait: first_exception does not count a success or a cancellation as an exception", "[wait]") {
    run([]() -> task<> {
        auto ok = create_task(value_after(1, 1ms));
        auto victim = create_task(value_after(2, 10s));
        auto last = create_task(value_after(3, 30ms));
        auto canceller = create_task(
            [](task_handle<int> h) -> task<> {
                co_await sleep(5ms);
                h.cancel();
            },
            victim);
        auto [done, pending] = co_await wait(hs(ok, victim, last), return_when::first_exception);
        CHECK(done.size() == 3u); // nothing threw: it waited for all
        CHECK(pending.empty());
        CHECK(victim.cancelled());
        CHECK(last.result() == 3);
        co_await canceller;
    }());
}

TEST_CASE("wait: all_completed does not raise a task's exception; the done handle holds it", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 5ms));
        auto b = create_task(fail_after(15ms));
        auto [done, pending] = co_await wait(hs(b, a));
        CHECK(done.size() == 2u);
        CHECK(pending.empty());
        int errors = 0;
        for (auto& h : done) errors += h.exception() != nullptr;
        CHECK(errors == 1);
    }());
}

TEST_CASE("wait: on timeout it returns what is done so far, without timeout_error, cancelling nothing", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 10ms));
        auto b = create_task(value_after(2, 10s));
        auto t0 = std::chrono::steady_clock::now();
        auto [done, pending] = co_await wait(hs(b, a), return_when::all_completed, 100ms);
        auto took = std::chrono::steady_clock::now() - t0;
        CHECK(took >= 100ms);
        CHECK(took < 5s);
        REQUIRE(done.size() == 1u);
        CHECK(same(done[0], a));
        REQUIRE(pending.size() == 1u);
        CHECK(same(pending[0], b));
        CHECK_FALSE(b.done()); // still running
        b.cancel();
    }());
}

TEST_CASE("wait: a timeout that is not reached changes nothing; the short form means all_completed", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 5ms));
        auto b = create_task(value_after(2, 10ms));
        auto r = co_await wait(hs(a, b), 10s);
        CHECK(r.done.size() == 2u);
        CHECK(r.pending.empty());
        auto f = co_await wait(hs(create_task(value_after(3, 10s)), create_task(value_after(4, 1ms))),
                               return_when::first_completed, 10s);
        CHECK(f.done.size() == 1u);
        CHECK(f.pending.size() == 1u);
        f.pending[0].cancel();
    }());
}

TEST_CASE("wait: a zero timeout gives the current split after one loop turn", "[wait]") {
    run([]() -> task<> {
        auto a = create_task([]() -> task<int> { co_return 1; }()); // ends in its first step, during that turn
        auto b = create_task(value_after(2, 10s));
        auto r = co_await wait(hs(a, b), 0ms);
        CHECK(r.done.size() == 1u);
        CHECK(r.pending.size() == 1u);
        b.cancel();
    }());
}

TEST_CASE("wait: cancelling the waiting task throws cancelled_error and leaves the tasks running", "[wait]") {
    run([]() -> task<> {
        auto a = create_task(value_after(1, 50ms));
        auto b = create_task(value_after(2, 10s));
        auto w = create_task(
            [](task_handle<int> a, task_handle<int> b) -> task<std::size_t> {
                auto r = co_await wait(hs(a, b), return_when::all_completed, 10s);
                co_return r.done.size();
            },
            a, b);
        co_await sleep(5ms);
        w.cancel();
        REQUIRE_THROWS_AS(co_await w, cancelled_error);
        CHECK_FALSE(a.done());
        CHECK_FALSE(b.done());
        // The tasks go on to their ends; a's completion finds no stale listener.
        int v = co_await a;
        CHECK(v == 1);
        CHECK(b.cancel());
        REQUIRE_THROWS_AS(co_await b, cancelled_error);
    }());
}
