#include <offload/gather.hpp>

#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>

#include "task_helpers.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::value_after;

namespace {

task<> fail_after(std::chrono::milliseconds d) {
    co_await sleep(d);
    throw std::invalid_argument("child failed");
}

struct probe {
    int started = 0;
    int cleaned = 0;
    int finished = 0;
};

task<int> sleeper(probe& p, std::chrono::milliseconds d) {
    ++p.started;
    try {
        co_await sleep(d);
    } catch (const cancelled_error&) {
        ++p.cleaned;
        throw;
    }
    ++p.finished;
    co_return 1;
}

} // namespace

TEST_CASE("gather: results come back in argument order, not completion order", "[gather]") {
    auto r = run([]() -> task<std::tuple<int, int, int>> {
        co_return co_await gather(value_after(1, 30ms), value_after(2, 1ms), value_after(3, 10ms));
    }());
    CHECK(r == std::make_tuple(1, 2, 3));
}

TEST_CASE("gather: void results and plain awaitables become std::monostate", "[gather]") {
    run([]() -> task<> {
        auto r = co_await gather(sleep(1ms), value_after(7, 1ms));
        CHECK(std::get<1>(r) == 7);
        static_assert(std::is_same_v<std::tuple_element_t<0, decltype(r)>, std::monostate>);
    }());
}

TEST_CASE("gather: children run concurrently", "[gather]") {
    auto t0 = std::chrono::steady_clock::now();
    run([]() -> task<> { co_await gather(sleep(100ms), sleep(100ms), sleep(100ms), sleep(100ms)); }());
    // Sequential would take 400 ms; generous bound for a noisy machine.
    CHECK(std::chrono::steady_clock::now() - t0 < 350ms);
}

TEST_CASE("gather: the first failure cancels the others, waits for them, then rethrows", "[gather]") {
    probe p;
    run([](probe& p) -> task<> {
        bool threw = false;
        try {
            co_await gather(sleeper(p, 10s), fail_after(5ms), sleeper(p, 10s));
        } catch (const std::invalid_argument& e) {
            threw = true;
            CHECK(std::string(e.what()) == "child failed");
        }
        CHECK(threw);
        // No orphan: both siblings already unwound when gather rethrew.
        CHECK(p.started == 2);
        CHECK(p.cleaned == 2);
        CHECK(p.finished == 0);
    }(p));
    CHECK(p.cleaned == 2);
}

TEST_CASE("gather: cancelling the gathering task cancels every child and leaves no orphan", "[gather]") {
    probe p;
    run([](probe& p) -> task<> {
        auto h = create_task([](probe& p) -> task<> { co_await gather(sleeper(p, 10s), sleeper(p, 10s)); },
                             std::ref(p));
        co_await sleep(5ms);
        CHECK(p.started == 2);
        h.cancel();
        bool cancelled = false;
        try {
            co_await h;
        } catch (const cancelled_error&) {
            cancelled = true;
        }
        CHECK(cancelled);
        CHECK(h.cancelled());
        CHECK(p.cleaned == 2);
    }(p));
}

TEST_CASE("gather: a vector of tasks gives a vector of results in order", "[gather]") {
    auto r = run([]() -> task<std::vector<int>> {
        std::vector<task<int>> ts;
        for (int i = 0; i < 50; ++i) ts.push_back(value_after(i, std::chrono::milliseconds(50 - i)));
        co_return co_await gather(std::move(ts));
    }());
    REQUIRE(r.size() == 50);
    for (int i = 0; i < 50; ++i) CHECK(r[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("gather: an empty vector completes at once", "[gather]") {
    auto r = run([]() -> task<std::vector<int>> { co_return co_await gather(std::vector<task<int>>{}); }());
    CHECK(r.empty());
}

TEST_CASE("gather: a vector child failure cancels the rest", "[gather]") {
    probe p;
    run([](probe& p) -> task<> {
        std::vector<task<int>> ts;
        ts.push_back(sleeper(p, 10s));
        ts.push_back([]() -> task<int> {
            co_await sleep(2ms);
            throw std::out_of_range("bad index");
        }());
        ts.push_back(sleeper(p, 10s));
        REQUIRE_THROWS_AS(co_await gather(std::move(ts)), std::out_of_range);
        CHECK(p.cleaned == 2);
    }(p));
}

TEST_CASE("gather: accepts task handles, which keep their own identity", "[gather]") {
    run([]() -> task<> {
        auto h = create_task(value_after(5, 1ms), "five");
        auto [a, b] = co_await gather(h, value_after(6, 1ms));
        CHECK(a == 5);
        CHECK(b == 6);
        CHECK(h.done());
        auto again = co_await h;
        CHECK(again == 5);
    }());
}

// --- gather(return_exceptions, ...) (asyncio.gather(..., return_exceptions=True)) ---

namespace {
struct other_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

task<int> throw_after(std::chrono::milliseconds d, const char* what) {
    co_await sleep(d);
    throw other_error(what);
}
} // namespace

TEST_CASE("gather(return_exceptions): values and exceptions come back in argument order, no child is cancelled",
          "[gather][return_exceptions]") {
    probe p;
    run([](probe& p) -> task<> {
        // The failures end first; the sleeper after them must still run to its end.
        auto [a, b, c, d] = co_await gather(return_exceptions, value_after(1, 20ms), fail_after(1ms),
                                            throw_after(2ms, "second"), sleeper(p, 30ms));
        REQUIRE(a.has_value());
        CHECK(a.value() == 1);
        REQUIRE_FALSE(b.has_value());
        CHECK_THROWS_AS(b.value(), std::invalid_argument);
        static_assert(std::is_same_v<decltype(b), outcome<std::monostate>>);
        REQUIRE_FALSE(c.has_value());
        CHECK_THROWS_WITH(std::rethrow_exception(c.error()), "second");
        REQUIRE(d.has_value());
        CHECK(d.value() == 1);
        CHECK(p.cleaned == 0);
        CHECK(p.finished == 1);
    }(p));
}

TEST_CASE("gather(return_exceptions): a cancelled child gives an outcome holding cancelled_error",
          "[gather][return_exceptions]") {
    probe p;
    run([](probe& p) -> task<> {
        auto victim = create_task(sleeper(p, 10s));
        auto canceller = create_task(
            [](task_handle<int> h) -> task<> {
                co_await sleep(5ms);
                h.cancel();
            },
            victim);
        auto [v, other] = co_await gather(return_exceptions, victim, value_after(3, 30ms));
        CHECK(v.cancelled());
        CHECK_THROWS_AS(v.value(), cancelled_error);
        REQUIRE(other.has_value());
        CHECK(other.value() == 3); // the sibling was not cancelled with it
        CHECK(p.cleaned == 1);
        co_await canceller;
    }(p));
}

TEST_CASE("gather(return_exceptions): cancelling the gather cancels every child, waits for them, and throws "
          "cancelled_error",
          "[gather][return_exceptions]") {
    probe p;
    run([](probe& p) -> task<> {
        auto h = create_task(
            [](probe& p) -> task<> {
                co_await gather(return_exceptions, sleeper(p, 10s), sleeper(p, 10s), throw_after(1ms, "early"));
            },
            std::ref(p));
        co_await sleep(10ms);
        CHECK(p.started == 2);
        CHECK_FALSE(h.done()); // the early failure cancelled nobody
        h.cancel();
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK(h.cancelled());
        CHECK(p.cleaned == 2); // both unwound before the gather threw
    }(p));
}

TEST_CASE("gather(return_exceptions): the exceptions count as retrieved, the loop does not report them",
          "[gather][return_exceptions]") {
    std::vector<exception_context> seen;
    event_loop loop;
    loop.set_exception_handler([&seen](const exception_context& c) { seen.push_back(c); });
    loop.run_until_complete([]() -> task<> {
        auto [a, b] = co_await gather(return_exceptions, throw_after(1ms, "one"), throw_after(2ms, "two"));
        CHECK_FALSE(a.has_value());
        CHECK_FALSE(b.has_value());
        std::vector<task<int>> ts;
        ts.push_back(throw_after(1ms, "three"));
        auto v = co_await gather(return_exceptions, std::move(ts));
        CHECK_FALSE(v.at(0).has_value());
    }());
    CHECK(seen.empty());
}

TEST_CASE("gather(return_exceptions): a vector of tasks gives a vector of outcomes in order",
          "[gather][return_exceptions]") {
    run([]() -> task<> {
        std::vector<task<int>> ts;
        for (int i = 0; i < 20; ++i)
            ts.push_back(i % 3 == 1 ? throw_after(std::chrono::milliseconds(20 - i), "bad")
                                    : value_after(i, std::chrono::milliseconds(20 - i)));
        auto r = co_await gather(return_exceptions, std::move(ts));
        REQUIRE(r.size() == 20u);
        for (int i = 0; i < 20; ++i) {
            const auto& o = r[static_cast<std::size_t>(i)];
            if (i % 3 == 1) {
                CHECK_FALSE(o.has_value());
                CHECK_THROWS_AS(o.value(), other_error);
            } else {
                REQUIRE(o.has_value());
                CHECK(o.value() == i);
            }
        }
        auto none = co_await gather(return_exceptions, std::vector<task<int>>{});
        CHECK(none.empty());
    }());
}

TEST_CASE("gather(return_exceptions): void tasks in a vector give outcome<std::monostate>",
          "[gather][return_exceptions]") {
    run([]() -> task<> {
        std::vector<task<>> ts;
        ts.push_back(fail_after(1ms));
        ts.push_back([]() -> task<> { co_await sleep(2ms); }());
        auto r = co_await gather(return_exceptions, std::move(ts));
        static_assert(std::is_same_v<decltype(r), std::vector<outcome<std::monostate>>>);
        REQUIRE(r.size() == 2u);
        CHECK_FALSE(r[0].has_value());
        CHECK(r[1].has_value());
    }());
}

TEST_CASE("gather(return_exceptions): cancelling a vector gather cancels its children", "[gather][return_exceptions]") {
    probe p;
    run([](probe& p) -> task<> {
        auto h = create_task(
            [](probe& p) -> task<> {
                std::vector<task<int>> ts;
                ts.push_back(sleeper(p, 10s));
                ts.push_back(sleeper(p, 10s));
                co_await gather(return_exceptions, std::move(ts));
            },
            std::ref(p));
        co_await sleep(5ms);
        h.cancel();
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK(p.cleaned == 2);
    }(p));
}

TEST_CASE("gather: a cancel(message) of the gathering task reaches its awaiter with the message", "[gather][cancel]") {
    run([]() -> task<> {
        auto h = create_task([]() -> task<> { co_await gather(value_after(1, 10s), value_after(2, 10s)); });
        co_await sleep(1ms);
        h.cancel("client went away");
        std::string what;
        try {
            co_await h;
        } catch (const cancelled_error& e) {
            what = e.what();
        }
        CHECK(what == "client went away");
    }());
}
