// Tests of ongoing stall reports (debug mode): a step still running past the
// threshold is reported while it runs, at 1x, 2x, 4x... the threshold, with
// the loop thread's backtrace naming the blocking function, plus one report
// when it ends; the rate limit drops and counts; debug off reports nothing.
#include <offload/slow_callback.hpp>

#include <offload/event_loop.hpp>

#include <busy_wait.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

// Exported (the target links with -rdynamic) and never inlined, so the
// ongoing reports' backtraces can name them.
[[gnu::noinline]] void stall_test_blocking_function(int ms) {
    offload::test::busy_wait(std::chrono::milliseconds(ms));
    asm volatile("" ::: "memory");
}
[[gnu::noinline]] void stall_test_sleeping_function(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms)); // the loop thread sits in a system call
    asm volatile("" ::: "memory");
}

namespace {

// A debug loop with threshold `t`, recording reports (from both threads).
struct recorder {
    std::mutex mu;
    std::vector<slow_callback_report> reports;
    event_loop loop;
    explicit recorder(std::chrono::milliseconds t, stall_report_options o = {}) {
        loop.set_debug(true);
        loop.set_slow_callback_duration(t);
        loop.set_stall_report_options(o);
        loop.set_slow_callback_handler([this](const slow_callback_report& r) {
            std::lock_guard lk(mu);
            reports.push_back(r);
        });
    }
    void run(auto fn) {
        loop.call_soon(fn);
        loop.call_soon([this] { loop.stop(); });
        loop.run_forever();
    }
    std::vector<slow_callback_report> take() {
        std::lock_guard lk(mu);
        return reports;
    }
};

bool names(const slow_callback_report& r, const std::string& fn) {
    for (const auto& f : r.backtrace)
        if (f.find(fn) != std::string::npos) return true;
    return false;
}

std::string dump(const std::vector<slow_callback_report>& rs) {
    std::string s;
    for (const auto& r : rs) s += format_slow_callback(r) + "\n";
    return s;
}

} // namespace

TEST_CASE(
    "stall_report: a step blocking 5x the threshold is reported at 1x, 2x, 4x while it runs, then once at its end",
    "[stall_report]") {
    recorder rec(100ms);
    rec.run([] { stall_test_blocking_function(500); });
    auto rs = rec.take();
    INFO(dump(rs));
    // On an idle machine: 1x, 2x, 4x and the end. A watchdog starved by a
    // loaded CI machine may wake past a mark and skip it (never report twice
    // in one band), so what is checked is: one report per doubling band at
    // most, in order, and exactly one end report.
    REQUIRE(rs.size() >= 2u);
    REQUIRE(rs.size() <= 4u);
    long last_band = -1;
    int named = 0;
    for (std::size_t i = 0; i + 1 < rs.size(); ++i) {
        CHECK(rs[i].ongoing);
        CHECK(rs[i].duration >= 100ms);
        long band = 0;
        while (rs[i].duration >= std::chrono::milliseconds(200L << band)) ++band;
        CHECK(band > last_band);
        CHECK(band <= 2);
        last_band = band;
        CHECK(rs[i].backtrace[0].find("on_signal") == std::string::npos); // the handler's frames are dropped
        // A loaded sanitizer run may leave one capture unanswered in time ("<no backtrace: ...>").
        if (names(rs[i], "stall_test_blocking_function(int)")) {
            ++named;
            CHECK(rs[i].task_name == "<callback>");
        }
    }
    CHECK(named >= 1);
    CHECK_FALSE(rs.back().ongoing);
    CHECK(rs.back().backtrace.empty());
    CHECK(rs.back().duration >= 500ms);
}

TEST_CASE("stall_report: a loop thread inside a system call is interrupted, and the call finishes its time",
          "[stall_report]") {
    recorder rec(100ms);
    const auto t0 = std::chrono::steady_clock::now();
    rec.run([] { stall_test_sleeping_function(250); });
    CHECK(offload::test::elapsed_since(t0) >= 250ms); // EINTR did not cut the sleep short
    auto rs = rec.take();
    INFO(dump(rs));
    REQUIRE(rs.size() >= 2u); // 1x, 2x, end (a starved watchdog may skip a mark)
    REQUIRE(rs.size() <= 3u);
    CHECK(rs[0].ongoing);
    CHECK(names(rs[0], "stall_test_sleeping_function(int)"));
    CHECK_FALSE(rs.back().ongoing);
}

TEST_CASE("stall_report: the rate limit drops reports over max_reports and counts them in the next one",
          "[stall_report]") {
    // Steps of 6x the threshold: the watchdog flags each even when it runs late.
    recorder rec(50ms, {.max_reports = 2, .window = 2s, .while_running = false});
    for (int i = 0; i < 4; ++i) rec.run([] { stall_test_blocking_function(300); }); // 4 slow steps in one window
    auto rs = rec.take();
    INFO(dump(rs));
    REQUIRE(rs.size() == 2u);
    CHECK(rs[0].suppressed == 0u);
    CHECK(rs[1].suppressed == 0u);
    std::this_thread::sleep_for(2s); // a new window
    rec.run([] { stall_test_blocking_function(300); });
    rs = rec.take();
    REQUIRE(rs.size() == 3u);
    CHECK(rs[2].suppressed == 2u);
    CHECK(format_slow_callback(rs[2]).find(std::to_string(rs[2].suppressed) + " earlier reports suppressed") !=
          std::string::npos);
}

TEST_CASE("stall_report: with while_running off, a long step gives only its end report", "[stall_report]") {
    recorder rec(50ms, {.while_running = false});
    rec.run([] { stall_test_blocking_function(250); });
    auto rs = rec.take();
    REQUIRE(rs.size() == 1u);
    CHECK_FALSE(rs[0].ongoing);
}

TEST_CASE("stall_report: nothing is reported with debug mode off", "[stall_report]") {
    recorder rec(50ms);
    rec.loop.set_debug(false);
    rec.run([] { stall_test_blocking_function(250); });
    REQUIRE(rec.take().empty());
}

TEST_CASE("stall_report: bad options are refused with a message", "[stall_report]") {
    event_loop loop;
    REQUIRE_THROWS_AS(loop.set_stall_report_options({.window = 0ms}), std::invalid_argument);
    REQUIRE_THROWS_AS(loop.set_stall_report_options({.signal = 2}), std::invalid_argument);
}

TEST_CASE("stall_report: format_slow_callback prints an ongoing report's backtrace, one frame a line",
          "[stall_report]") {
    slow_callback_report r;
    r.task_name = "t";
    r.duration = 200ms;
    r.ongoing = true;
    r.backtrace = {"a()+0x1", "b()+0x2"};
    const std::string s = format_slow_callback(r);
    CHECK(s.find("still running") != std::string::npos);
    CHECK(s.find("\n  #0 a()+0x1\n  #1 b()+0x2") != std::string::npos);
}
