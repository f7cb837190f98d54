// Tests of timeout(d) / timeout_at(t), asyncio.timeout: a deadline for a
// block of awaits in the caller's own task, reschedule(), expired(), and how
// it composes with other cancellations (nested scopes on one deadline).
#include <offload/timeout.hpp>

#include <offload/errors.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include "task_helpers.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::value_after;
using steady = std::chrono::steady_clock;

namespace {
struct probe {
    bool started = false;
    bool cleaned = false;
    bool finished = false;
};

task<int> sleepy(probe& p, std::chrono::milliseconds d) {
    p.started = true;
    try {
        co_await sleep(d);
    } catch (const cancelled_error&) {
        p.cleaned = true;
        throw;
    }
    p.finished = true;
    co_return 9;
}

// A nested block: records what its scope's run() threw; lets a cancellation
// go on (as it should), swallows its own timeout.
task<> inner_block(std::string& saw, std::optional<steady::time_point> when, bool& inner_expired) {
    auto scope = timeout_at(when);
    try {
        co_await scope.run(sleep(10s));
    } catch (const timeout_error&) {
        saw = "timeout_error";
    } catch (const cancelled_error&) {
        saw = "cancelled_error";
        inner_expired = scope.expired();
        throw;
    }
    inner_expired = scope.expired();
}
} // namespace

TEST_CASE("timeout: a block that finishes in time gives its result", "[timeout]") {
    run([]() -> task<> {
        auto scope = timeout(5s);
        int v = co_await scope.run(value_after(3, 1ms));
        CHECK(v == 3);
        CHECK_FALSE(scope.expired());
        co_await sleep(1ms); // nothing is left pending on the task
    }());
}

TEST_CASE("timeout: at the deadline the block is cancelled and run() throws timeout_error", "[timeout]") {
    probe p;
    run([](probe& p) -> task<> {
        auto scope = timeout(5ms);
        REQUIRE_THROWS_AS(co_await scope.run(sleepy(p, 10s)), timeout_error);
        CHECK(scope.expired());
        co_await sleep(1ms); // the task itself is not left cancelled
    }(p));
    CHECK(p.cleaned);
    CHECK_FALSE(p.finished);
}

TEST_CASE("timeout: a block of several awaits shares one deadline", "[timeout]") {
    int steps = 0;
    run([](int& steps) -> task<> {
        auto scope = timeout(30ms);
        REQUIRE_THROWS_AS(co_await scope.run([](int& steps) -> task<> {
            for (;;) {
                co_await sleep(5ms);
                ++steps;
            }
        }(steps)),
                          timeout_error);
    }(steps));
    CHECK(steps >= 1); // some steps ran before the shared deadline
}

TEST_CASE("timeout: a deadline that already passed throws without starting the block", "[timeout]") {
    probe p;
    run([](probe& p) -> task<> {
        auto scope = timeout(0s);
        REQUIRE_THROWS_AS(co_await scope.run(sleepy(p, 1ms)), timeout_error);
        CHECK(scope.expired());
        auto past = timeout_at(steady::now() - 1s);
        REQUIRE_THROWS_AS(co_await past.run(sleepy(p, 1ms)), timeout_error);
    }(p));
    CHECK_FALSE(p.started);
}

TEST_CASE("timeout: reschedule() from inside the block moves the deadline", "[timeout]") {
    run([]() -> task<> {
        auto scope = timeout(10ms);
        int v = co_await scope.run([](timeout_scope& s) -> task<int> {
            s.reschedule(steady::now() + 5s); // more time, before the first deadline
            co_await sleep(40ms);
            co_return 4;
        }(scope));
        CHECK(v == 4);
        CHECK_FALSE(scope.expired());

        auto sooner = timeout(5s);
        REQUIRE_THROWS_AS(co_await sooner.run([](timeout_scope& s) -> task<> {
            s.reschedule(steady::now() - 1ms); // a passed deadline: cancelled at once
            co_await sleep(10s);
        }(sooner)),
                          timeout_error);
        CHECK(sooner.expired());
        REQUIRE_THROWS_AS(sooner.reschedule(steady::now() + 1s), std::logic_error);

        auto none = timeout(5ms);
        none.reschedule(std::nullopt); // no deadline at all
        int w = co_await none.run(value_after(2, 20ms));
        CHECK(w == 2);
        CHECK_FALSE(none.when());
    }());
}

TEST_CASE("timeout: timeout_at(nullopt) never expires; a scope runs one block", "[timeout][misuse]") {
    run([]() -> task<> {
        auto scope = timeout_at(std::nullopt);
        int v = co_await scope.run(value_after(1, 5ms));
        CHECK(v == 1);
        REQUIRE_THROWS_AS(co_await scope.run(value_after(1, 1ms)), std::logic_error);
    }());
}

TEST_CASE("timeout: a block that swallows the cancellation and returns gives its value, and expired() says why",
          "[timeout]") {
    run([]() -> task<> {
        auto scope = timeout(5ms);
        int v = co_await scope.run([]() -> task<int> {
            try {
                co_await sleep(10s);
            } catch (const cancelled_error&) {
                co_return -1;
            }
            co_return 0;
        }());
        CHECK(v == -1);
        CHECK(scope.expired());
        co_await sleep(1ms); // the scope took its request back: nothing pending
    }());
}

TEST_CASE("timeout: an expired deadline with no await left does not leave the task cancelled", "[timeout]") {
    run([]() -> task<> {
        auto scope = timeout(1ms);
        co_await scope.run([]() -> task<> {
            std::this_thread::sleep_for(5ms); // past the deadline, but the timer has not fired
            co_return;
        }());
        co_await sleep(10ms); // the timer fired after the block: its request is void
        CHECK_FALSE(scope.expired());
    }());
}

TEST_CASE("timeout: a cancellation of the task from elsewhere passes through as cancelled_error", "[timeout][cancel]") {
    run([]() -> task<> {
        bool expired = true;
        auto h = create_task(
            [](bool& expired) -> task<> {
                auto scope = timeout(5s);
                try {
                    co_await scope.run(sleep(10s));
                } catch (...) {
                    expired = scope.expired();
                    throw;
                }
            },
            std::ref(expired));
        co_await sleep(1ms);
        h.cancel();
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK_FALSE(expired);
    }());
}

TEST_CASE("timeout: nested scopes on one deadline: only the outer raises timeout_error", "[timeout][cancel]") {
    std::string saw;
    bool inner_expired = false;
    bool outer_expired = false;
    run([](std::string& saw, bool& inner_expired, bool& outer_expired) -> task<> {
        const auto deadline = steady::now() + 20ms;
        auto outer = timeout_at(deadline);
        REQUIRE_THROWS_AS(co_await outer.run(inner_block(saw, deadline, inner_expired)), timeout_error);
        outer_expired = outer.expired();
        co_await sleep(1ms); // and nothing is left pending
    }(saw, inner_expired, outer_expired));
    CHECK(saw == "cancelled_error");
    CHECK(inner_expired);
    CHECK(outer_expired);
}

TEST_CASE("timeout: an inner scope that expires alone raises timeout_error inside an outer one", "[timeout]") {
    std::string saw;
    bool inner_expired = false;
    run([](std::string& saw, bool& inner_expired) -> task<> {
        auto outer = timeout(5s);
        co_await outer.run(inner_block(saw, steady::now() + 5ms, inner_expired));
        CHECK_FALSE(outer.expired());
    }(saw, inner_expired));
    CHECK(saw == "timeout_error");
    CHECK(inner_expired);
}
