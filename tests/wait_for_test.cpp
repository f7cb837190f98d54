#include <offload/wait_for.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>

#include "task_helpers.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::value_after;

namespace {
struct probe {
    int cleaned = 0;
};

task<int> slow(probe& p) {
    try {
        co_await sleep(10s);
    } catch (const cancelled_error&) {
        ++p.cleaned;
        throw;
    }
    co_return 1;
}
} // namespace

TEST_CASE("wait_for: a result that arrives in time is returned", "[wait_for]") {
    int v = run([]() -> task<int> { co_return co_await wait_for(value_after(4, 1ms), 5s); }());
    CHECK(v == 4);
}

TEST_CASE("wait_for: on timeout the inner task is cancelled, has unwound, and timeout_error is thrown", "[wait_for]") {
    probe p;
    run([](probe& p) -> task<> {
        auto t0 = std::chrono::steady_clock::now();
        bool timed_out = false;
        try {
            co_await wait_for(slow(p), 20ms);
        } catch (const timeout_error&) {
            timed_out = true;
        }
        CHECK(timed_out);
        CHECK(p.cleaned == 1); // unwound before wait_for threw
        auto took = std::chrono::steady_clock::now() - t0;
        CHECK(took >= 20ms);
        CHECK(took < 2s);
    }(p));
}

TEST_CASE("wait_for: timeout_error is not a cancelled_error", "[wait_for]") {
    run([]() -> task<> {
        bool caught_cancel = false;
        bool caught_timeout = false;
        try {
            try {
                co_await wait_for(sleep(1s), 1ms);
            } catch (const cancelled_error&) {
                caught_cancel = true;
            }
        } catch (const timeout_error&) {
            caught_timeout = true;
        }
        CHECK_FALSE(caught_cancel);
        CHECK(caught_timeout);
    }());
}

TEST_CASE("wait_for: an inner result that wins the race with the deadline is returned", "[wait_for]") {
    // The inner task swallows the cancellation and returns a value: the value wins.
    int v = run([]() -> task<int> {
        co_return co_await wait_for(
            []() -> task<int> {
                try {
                    co_await sleep(10s);
                } catch (const cancelled_error&) {
                    co_return 99;
                }
                co_return 0;
            }(),
            5ms);
    }());
    CHECK(v == 99);
}

TEST_CASE("wait_for: an inner exception passes through unchanged", "[wait_for]") {
    run([]() -> task<> {
        REQUIRE_THROWS_AS(co_await wait_for(
                              []() -> task<int> {
                                  co_await sleep(1ms);
                                  throw std::invalid_argument("inner");
                              }(),
                              5s),
                          std::invalid_argument);
    }());
}

TEST_CASE("wait_for: cancelling the waiter cancels the inner operation and throws cancelled_error", "[wait_for]") {
    probe p;
    run([](probe& p) -> task<> {
        auto h = create_task([](probe& p) -> task<int> { co_return co_await wait_for(slow(p), 10s); }, std::ref(p));
        co_await sleep(5ms);
        h.cancel();
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK(p.cleaned == 1);
    }(p));
}

TEST_CASE("wait_for: a zero timeout on an unfinished operation times out", "[wait_for]") {
    run([]() -> task<> { REQUIRE_THROWS_AS(co_await wait_for(sleep(1s), 0ms), timeout_error); }());
}

TEST_CASE("wait_for: a zero or negative timeout throws timeout_error without starting the operation", "[wait_for]") {
    // asyncio: "coroutine ... was never awaited"; the first step never runs.
    run([]() -> task<> {
        bool started = false;
        auto first_step = [](bool& s) -> task<int> {
            s = true;
            co_return 1;
        };
        REQUIRE_THROWS_AS(co_await wait_for(first_step(started), 0ms), timeout_error);
        CHECK_FALSE(started);
        REQUIRE_THROWS_AS(co_await wait_for(first_step(started), -5ms), timeout_error);
        CHECK_FALSE(started);
        int v = co_await wait_for(first_step(started), 1s);
        CHECK(v == 1);
        CHECK(started);
    }());
}

TEST_CASE("wait_for: a zero timeout on a finished task handle gives its result", "[wait_for]") {
    run([]() -> task<> {
        auto h = create_task(value_after(3, 0ms));
        co_await h;
        int v = co_await wait_for(h, 0ms);
        CHECK(v == 3);
    }());
}

TEST_CASE("wait_for: leaves no timer behind", "[wait_for]") {
    run([]() -> task<> {
        for (int i = 0; i < 100; ++i) {
            int v = co_await wait_for(value_after(i, 0ms), 10s);
            CHECK(v == i);
        }
        CHECK(event_loop::current().scheduled_timers() == 0);
    }());
}

// --- nested timeouts that expire together (issue 10, item 3) -------------------

namespace {
// An inner wait_until that records what its own await saw.
task<int> inner_timeout(std::string& saw, std::chrono::steady_clock::time_point deadline) {
    try {
        co_return co_await wait_until(value_after(1, 10s), deadline);
    } catch (const timeout_error&) {
        saw = "timeout_error";
        throw;
    } catch (const cancelled_error&) {
        saw = "cancelled_error";
        throw;
    }
}

// Keeps the loop's thread busy past both deadlines, so that both timers are
// due in the same pass of the loop.
task<> block_loop(std::chrono::milliseconds d) {
    co_await sleep(0s);
    std::this_thread::sleep_for(d);
}
} // namespace

TEST_CASE("wait_for: nested timeouts on one deadline: the outer raises timeout_error, the inner sees cancelled_error",
          "[wait_for][cancel]") {
    std::string saw;
    run([](std::string& saw) -> task<> {
        const auto deadline = std::chrono::steady_clock::now() + 20ms;
        REQUIRE_THROWS_AS(co_await wait_until(inner_timeout(saw, deadline), deadline), timeout_error);
    }(saw));
    CHECK(saw == "cancelled_error");
}

TEST_CASE("wait_for: when the inner timer of two due together fires first, the outer still reports the timeout",
          "[wait_for][cancel]") {
    // The inner deadline is 1 ms earlier; the loop is kept busy past both, so
    // the inner timer fires first and the outer one in the same pass, before
    // the inner task has run. The outer cancellation must not be lost.
    std::string saw;
    run([](std::string& saw) -> task<> {
        const auto now = std::chrono::steady_clock::now();
        auto blocker = create_task(block_loop(100ms));
        REQUIRE_THROWS_AS(co_await wait_until(inner_timeout(saw, now + 20ms), now + 21ms), timeout_error);
        co_await blocker;
    }(saw));
    CHECK(saw == "cancelled_error");
}

TEST_CASE("wait_until: a result before the deadline is returned; a passed deadline does not start the operation",
          "[wait_for]") {
    run([]() -> task<> {
        int v = co_await wait_until(value_after(6, 1ms), std::chrono::steady_clock::now() + 5s);
        CHECK(v == 6);
        bool started = false;
        REQUIRE_THROWS_AS(co_await wait_until(
                              [](bool& s) -> task<> {
                                  s = true;
                                  co_return;
                              }(started),
                              std::chrono::steady_clock::now() - 1ms),
                          timeout_error);
        CHECK_FALSE(started);
        probe p;
        REQUIRE_THROWS_AS(co_await wait_until(slow(p), std::chrono::steady_clock::now() + 5ms), timeout_error);
        CHECK(p.cleaned == 1);
    }());
}
