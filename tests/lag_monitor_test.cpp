#include <offload/lag_monitor.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

using namespace offload;
using namespace std::chrono_literals;

TEST_CASE("lag_monitor: a step that blocks the loop shows up as max lateness", "[lag_monitor]") {
    auto s = run([]() -> task<lag_stats> {
        lag_monitor mon(1ms);
        mon.start();
        CHECK(mon.running());
        co_await sleep(20ms);
        std::this_thread::sleep_for(50ms); // blocks the loop
        co_await sleep(20ms);
        mon.stop();
        CHECK_FALSE(mon.running());
        co_return mon.stats();
    }());
    CHECK(s.samples >= 3);
    CHECK(s.max >= 40ms);
    CHECK(s.max < 5s);
    CHECK(s.p50 <= s.p95);
    CHECK(s.p95 <= s.p99);
    CHECK(s.p99 <= s.max);
}

TEST_CASE("lag_monitor: an idle loop serves the timer with small lateness", "[lag_monitor]") {
    auto s = run([]() -> task<lag_stats> {
        lag_monitor mon(2ms);
        mon.start();
        co_await sleep(200ms);
        co_return mon.stats();
    }()); // the monitor stops on destruction
    CHECK(s.samples >= 10);
    CHECK(s.p50 < 20ms); // generous: a noisy machine
    CHECK(s.p50 <= s.max);
}

TEST_CASE("lag_monitor: no samples before start, and reset forgets them", "[lag_monitor]") {
    lag_monitor mon;
    auto s = mon.stats();
    CHECK(s.samples == 0);
    CHECK(s.max == 0ns);
    mon.stop(); // harmless when not started
    run([](lag_monitor& m) -> task<> {
        m.start();
        m.start(); // no-op
        co_await sleep(10ms);
        m.stop();
    }(mon));
    CHECK(mon.stats().samples >= 1);
    mon.reset();
    CHECK(mon.stats().samples == 0);
}

TEST_CASE("lag_monitor: a monitor that outlives its loop stops by itself", "[lag_monitor]") {
    lag_monitor mon(1ms);
    run([](lag_monitor& m) -> task<> {
        m.start();
        co_await sleep(5ms);
    }(mon));
    CHECK_FALSE(mon.running());
    auto s = mon.stats();
    CHECK(s.samples >= 1);
}

TEST_CASE("lag_monitor: counts the firings later than its threshold", "[lag_monitor]") {
    auto s = run([]() -> task<lag_stats> {
        lag_monitor mon(1ms, 30ms);
        CHECK(mon.threshold() == 30ms);
        mon.start();
        co_await sleep(10ms);
        std::this_thread::sleep_for(80ms); // blocks the loop: one late firing
        co_await sleep(10ms);
        std::this_thread::sleep_for(80ms); // and another
        co_await sleep(10ms);
        mon.stop();
        co_return mon.stats();
    }());
    CHECK(s.threshold == 30ms);
    CHECK(s.over_threshold >= 2);
    CHECK(s.over_threshold < s.samples); // the prompt firings are not counted
    lag_monitor fresh;
    CHECK(fresh.threshold() == lag_monitor::default_threshold);
    CHECK(fresh.stats().over_threshold == 0);
}

TEST_CASE("lag_monitor: reset forgets the count over the threshold too", "[lag_monitor]") {
    lag_monitor mon(1ms, 0ns); // every late firing counts
    run([](lag_monitor& m) -> task<> {
        m.start();
        co_await sleep(5ms);
        std::this_thread::sleep_for(5ms);
        co_await sleep(5ms);
        m.stop();
    }(mon));
    CHECK(mon.stats().over_threshold >= 1);
    mon.reset();
    CHECK(mon.stats().over_threshold == 0);
}
