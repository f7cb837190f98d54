// Tests of the slow-step detector (debug mode): a step that holds the loop
// past slow_callback_duration is reported once, with the task's name and the
// awaits it ran between; fast steps and debug-off loops report nothing.
#include <offload/slow_callback.hpp>

#include <offload/event_loop.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <busy_wait.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

struct lines {
    unsigned resumed = 0;   // line A: the await the slow step resumed from
    unsigned suspended = 0; // line B: the await the slow step ended on
};

// Suspends on line A, holds the loop for `hold`, suspends again on line B.
// Each __LINE__ is on the same line as its co_await.
// clang-format off
task<> blocker(lines& l, std::chrono::milliseconds hold) {
    l.resumed = __LINE__; co_await sleep(1ms);
    offload::test::busy_wait(hold);
    l.suspended = __LINE__; co_await sleep(1ms);
}
// clang-format on

task<> run_blocker(lines& l, std::chrono::milliseconds hold) {
    auto h = create_task(blocker(l, hold), "blocker");
    co_await h;
}

// A loop in debug mode with a 100 ms threshold whose reports land in `out`
// (ongoing reports come from the watchdog thread: `reports` is read only
// after the run, once the step it watched has ended and been reported).
struct recording_loop {
    std::vector<slow_callback_report> reports;
    event_loop loop;
    recording_loop() {
        loop.set_debug(true);
        loop.set_slow_callback_duration(100ms);
        loop.set_slow_callback_handler([this](const slow_callback_report& r) { reports.push_back(r); });
    }
    std::vector<slow_callback_report> about(std::string_view name) const {
        std::vector<slow_callback_report> out;
        for (const auto& r : reports)
            if (r.task_name == name && !r.ongoing) out.push_back(r); // end-of-step reports (ongoing: stall_report_test)
        return out;
    }
};

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Sets (or unsets, with nullptr) an environment variable for one scope.
struct scoped_env {
    std::string name;
    std::string old;
    bool had;
    scoped_env(const char* n, const char* v) : name(n) {
        const char* o = std::getenv(n);
        had = o != nullptr;
        if (had) old = o;
        if (v)
            ::setenv(n, v, 1);
        else
            ::unsetenv(n);
    }
    ~scoped_env() {
        if (had)
            ::setenv(name.c_str(), old.c_str(), 1);
        else
            ::unsetenv(name.c_str());
    }
};

} // namespace

TEST_CASE("slow_callback: a step holding the loop past the threshold is reported once, with its task and awaits",
          "[slow_callback]") {
    scoped_env no_env("OFFLOAD_DEBUG", nullptr);
    recording_loop rl;
    lines l;
    rl.loop.run_until_complete(run_blocker(l, 150ms));

    auto reports = rl.about("blocker");
    REQUIRE(reports.size() == 1u);
    const slow_callback_report& r = reports[0];
    REQUIRE(r.task_name == "blocker");
    REQUIRE(r.duration >= 150ms);
    REQUIRE(r.resumed_at.line() == l.resumed);
    REQUIRE(r.suspended_at.line() == l.suspended);
    REQUIRE(ends_with(r.resumed_at.file_name(), "slow_callback_test.cpp"));
    REQUIRE(ends_with(r.suspended_at.file_name(), "slow_callback_test.cpp"));
}

TEST_CASE("slow_callback: a step shorter than the threshold is not reported", "[slow_callback]") {
    scoped_env no_env("OFFLOAD_DEBUG", nullptr);
    recording_loop rl;
    lines l;
    rl.loop.run_until_complete(run_blocker(l, 50ms));
    REQUIRE(rl.about("blocker").empty());
}

TEST_CASE("slow_callback: nothing is reported with debug mode off", "[slow_callback]") {
    scoped_env no_env("OFFLOAD_DEBUG", nullptr);
    recording_loop rl;
    rl.loop.set_debug(false);
    REQUIRE_FALSE(rl.loop.get_debug());
    lines l;
    rl.loop.run_until_complete(run_blocker(l, 150ms));
    REQUIRE(rl.reports.empty());
}

TEST_CASE("slow_callback: a slow plain callback is reported as <callback>", "[slow_callback]") {
    scoped_env no_env("OFFLOAD_DEBUG", nullptr);
    recording_loop rl;
    rl.loop.call_soon([] { offload::test::busy_wait(150ms); });
    rl.loop.call_soon([&rl] { rl.loop.stop(); });
    rl.loop.run_forever();
    auto reports = rl.about("<callback>");
    REQUIRE(reports.size() == 1u);
    REQUIRE(reports[0].duration >= 150ms);
    REQUIRE(reports[0].resumed_at.line() == 0u);
}

TEST_CASE("slow_callback: env OFFLOAD_DEBUG=1 turns debug mode on", "[slow_callback]") {
    {
        scoped_env on("OFFLOAD_DEBUG", "1");
        event_loop loop;
        REQUIRE(loop.get_debug());
    }
    {
        scoped_env off("OFFLOAD_DEBUG", "0");
        event_loop loop;
        REQUIRE_FALSE(loop.get_debug());
    }
    {
        scoped_env unset("OFFLOAD_DEBUG", nullptr);
        event_loop loop;
        REQUIRE_FALSE(loop.get_debug());
    }
}

TEST_CASE("slow_callback: format_slow_callback names the task and the file:line of both awaits", "[slow_callback]") {
    slow_callback_report r;
    r.task_name = "blocker";
    r.duration = 150ms;
    r.resumed_at = std::source_location::current();
    r.suspended_at = std::source_location::current();
    const std::string s = format_slow_callback(r);
    INFO(s);
    REQUIRE(s.find("'blocker'") != std::string::npos);
    REQUIRE(s.find(std::string(r.resumed_at.file_name()) + ":" + std::to_string(r.resumed_at.line())) !=
            std::string::npos);
    REQUIRE(s.find(std::string(r.suspended_at.file_name()) + ":" + std::to_string(r.suspended_at.line())) !=
            std::string::npos);
    REQUIRE(s.find("150") != std::string::npos);
}

TEST_CASE("slow_callback: the default handler writes one line to stderr", "[slow_callback]") {
    scoped_env no_env("OFFLOAD_DEBUG", nullptr);
    std::FILE* capture = std::tmpfile();
    REQUIRE(capture != nullptr);
    std::fflush(stderr);
    const int saved = ::dup(STDERR_FILENO);
    REQUIRE(saved >= 0);
    ::dup2(::fileno(capture), STDERR_FILENO);
    {
        event_loop loop;
        loop.set_debug(true);
        loop.set_slow_callback_duration(100ms);
        loop.call_soon([] { offload::test::busy_wait(150ms); });
        loop.call_soon([&loop] { loop.stop(); });
        loop.run_forever();
    }
    std::fflush(stderr);
    ::dup2(saved, STDERR_FILENO);
    ::close(saved);
    std::string text;
    std::rewind(capture);
    char buf[512];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, capture)) text.append(buf, n);
    std::fclose(capture);
    INFO(text);
    REQUIRE(text.find("slow step in task '<callback>'") != std::string::npos);
}

TEST_CASE("slow_callback: a debug loop run again still reports, and the time between runs is no step",
          "[slow_callback]") {
    recording_loop r;
    lines l;
    r.loop.run_until_complete(run_blocker(l, 0ms)); // the first run starts the watchdog
    CHECK(r.about("blocker").empty());
    std::this_thread::sleep_for(600ms); // not running: nothing to report
    r.loop.run_until_complete(run_blocker(l, 0ms));
    CHECK(r.about("blocker").empty());
    r.loop.run_until_complete(run_blocker(l, 250ms)); // a third run, with one slow step
    auto slow = r.about("blocker");
    REQUIRE(slow.size() == 1);
    CHECK(slow[0].duration >= 250ms);
    CHECK(slow[0].duration < 600ms); // the idle time between runs is not counted
}
