// Tests of sleep(d): sleep(0) yields to other ready tasks, a sleep lasts at
// least its duration, and cancelling a sleep removes its timer at once.
#include <offload/sleep.hpp>

#include <offload/event_loop.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

task<> two_steps(std::vector<std::string>& log, std::string name) {
    log.push_back(name + "1");
    co_await sleep(0ms);
    log.push_back(name + "2");
}

task<> sleep_long() { co_await sleep(24h); }

template <class T>
T drive(task<T> t) {
    event_loop loop;
    return loop.run_until_complete(std::move(t));
}

} // namespace

TEST_CASE("sleep: sleep(0) yields so another ready task runs in between", "[sleep]") {
    std::vector<std::string> log = drive([]() -> task<std::vector<std::string>> {
        std::vector<std::string> out;
        auto a = create_task(two_steps(out, "a"));
        auto b = create_task(two_steps(out, "b"));
        co_await a;
        co_await b;
        co_return out;
    }());
    REQUIRE(log == std::vector<std::string>{"a1", "b1", "a2", "b2"});
}

TEST_CASE("sleep: a negative duration also just yields", "[sleep]") {
    std::vector<std::string> log = drive([]() -> task<std::vector<std::string>> {
        std::vector<std::string> out;
        auto other = create_task(two_steps(out, "o"));
        out.push_back("main");
        co_await sleep(-5ms);
        out.push_back("main-after");
        co_await other;
        co_return out;
    }());
    REQUIRE(log.size() == 4u);
    REQUIRE(log[0] == "main");
    REQUIRE(log[1] == "o1");
    REQUIRE(log[2] == "main-after");
}

TEST_CASE("sleep: a sleep lasts at least the requested duration", "[sleep]") {
    drive([]() -> task<> {
        for (auto d :
             {std::chrono::nanoseconds(1ms), std::chrono::nanoseconds(15ms), std::chrono::nanoseconds(250us)}) {
            const auto t0 = std::chrono::steady_clock::now();
            co_await sleep(d);
            const auto took = std::chrono::steady_clock::now() - t0;
            REQUIRE(took >= d);
        }
        const auto t0 = std::chrono::steady_clock::now();
        co_await sleep(std::chrono::duration<double, std::milli>(2.5)); // fractional durations round up
        REQUIRE(std::chrono::steady_clock::now() - t0 >= 2500us);
    }());
}

TEST_CASE("sleep: cancelling a sleep removes its timer at once", "[sleep][cancel]") {
    drive([]() -> task<> {
        auto& loop = event_loop::current();
        auto h = create_task(sleep_long());
        co_await sleep(0ms); // let it reach its sleep
        const std::size_t before = loop.scheduled_timers();
        REQUIRE(before >= 1u);
        REQUIRE(h.cancel());
        REQUIRE(loop.scheduled_timers() == before - 1); // removed by cancel(), not when it would expire
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        REQUIRE(loop.scheduled_timers() == before - 1);
    }());
}

TEST_CASE("sleep: a sleep that is destroyed unawaited leaves no timer", "[sleep]") {
    drive([]() -> task<> {
        auto& loop = event_loop::current();
        const std::size_t before = loop.scheduled_timers();
        {
            auto s = sleep(1h); // never awaited
        }
        REQUIRE(loop.scheduled_timers() == before);
        co_return;
    }());
}
