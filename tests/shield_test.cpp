// Tests of shield(awaitable), asyncio.shield: the operation survives the
// cancellation of its awaiter, and its result or error is never lost.
#include <offload/shield.hpp>

#include <offload/errors.hpp>
#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include "task_helpers.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::value_after;

namespace {
task<int> save(bool& saved, std::chrono::milliseconds d) {
    co_await sleep(d);
    saved = true;
    co_return 11;
}

task<int> broken_after(std::chrono::milliseconds d) {
    co_await sleep(d);
    throw std::runtime_error("disk full");
}
} // namespace

TEST_CASE("shield: gives the operation's result, or rethrows its error", "[shield]") {
    run([]() -> task<> {
        int v = co_await shield(value_after(5, 1ms));
        CHECK(v == 5);
        REQUIRE_THROWS_AS(co_await shield(broken_after(1ms)), std::runtime_error);
    }());
}

TEST_CASE("shield: cancelling the awaiter throws at once and the operation runs to its end", "[shield][cancel]") {
    bool saved = false;
    run([](bool& saved) -> task<> {
        auto op = create_task(save(saved, 30ms));
        auto waiter = create_task([](task_handle<int> op) -> task<int> { co_return co_await shield(op); }, op);
        co_await sleep(1ms);
        waiter.cancel();
        REQUIRE_THROWS_AS(co_await waiter, cancelled_error);
        CHECK_FALSE(op.done()); // the awaiter stopped; the operation did not
        int v = co_await op;
        CHECK(v == 11);
    }(saved));
    CHECK(saved);
}

TEST_CASE("shield: an awaiter cancelled before it waits leaves the operation running", "[shield][cancel]") {
    bool saved = false;
    run([](bool& saved) -> task<> {
        auto waiter = create_task(
            [](bool& saved) -> task<> {
                current_task().cancel(); // pending before the shield's await
                co_await shield(save(saved, 5ms));
            },
            std::ref(saved));
        REQUIRE_THROWS_AS(co_await waiter, cancelled_error);
        co_await sleep(30ms);
    }(saved));
    CHECK(saved);
}

TEST_CASE("shield: an error of an operation whose awaiter was cancelled reaches the exception handler",
          "[shield][errors]") {
    std::vector<std::string> seen;
    event_loop loop;
    loop.set_exception_handler([&seen](const exception_context& c) {
        try {
            std::rethrow_exception(c.exception);
        } catch (const std::exception& e) {
            seen.push_back(e.what());
        }
    });
    loop.run_until_complete([]() -> task<> {
        auto waiter = create_task([]() -> task<> { co_await shield(broken_after(5ms)); });
        co_await sleep(1ms);
        waiter.cancel();
        REQUIRE_THROWS_AS(co_await waiter, cancelled_error);
        co_await sleep(30ms); // the operation fails with nobody awaiting it
    }());
    REQUIRE(seen == std::vector<std::string>{"disk full"});
}
