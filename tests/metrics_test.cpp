// Tests of offload::metrics: the Prometheus text is checked line by line
// against the 0.0.4 format (tests/support/metrics_check.hpp), the JSON is
// parsed strictly, and both agree with stats() of real pools and loops.
#include <offload/metrics.hpp>

#include <offload/event_loop.hpp>
#include <offload/lag_monitor.hpp>
#include <offload/process_pool.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/thread_pool.hpp>
#include <offload/to_thread.hpp>

#include <busy_wait.hpp>
#include <metrics_check.hpp>
#include <pp_workers.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::check_prometheus;
using offload::test::json_parser;

namespace {

int twice(int x) { return 2 * x; }

const std::string odd_name = "a\"b\\c\nd";

// Every executor_stats field against its Prometheus sample and JSON member.
void check_executor(const offload::test::prom_text& p, const offload::test::json_value& j, const std::string& name,
                    const executor_stats& s) {
    INFO("pool " << name);
    const std::map<std::string, std::string> l{{"pool", name}};
    auto u = [](auto v) { return static_cast<double>(v); };
    CHECK(p.value("offload_executor_workers", l) == u(s.workers));
    CHECK(p.value("offload_executor_busy", l) == u(s.busy));
    CHECK(p.value("offload_executor_queued", l) == u(s.queued));
    CHECK(p.value("offload_executor_max_queued", l) == u(s.max_queued));
    CHECK(p.value("offload_executor_submitted_total", l) == u(s.submitted));
    CHECK(p.value("offload_executor_completed_total", l) == u(s.completed));
    CHECK(p.value("offload_executor_failed_total", l) == u(s.failed));
    CHECK(p.value("offload_executor_cancelled_total", l) == u(s.cancelled));
    CHECK(p.value("offload_executor_crashes_total", l) == u(s.crashes));
    CHECK(p.value("offload_executor_respawns_total", l) == u(s.respawns));
    CHECK(p.value("offload_executor_kills_total", l) == u(s.kills));
    CHECK(p.value("offload_executor_sent_bytes_total", l) == u(s.bytes_sent));
    CHECK(p.value("offload_executor_received_bytes_total", l) == u(s.bytes_received));
    auto secs = [](std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e9; };
    CHECK(p.value("offload_executor_run_time_seconds", {{"pool", name}, {"quantile", "0.5"}}) == secs(s.run_time.p50));
    CHECK(p.value("offload_executor_run_time_seconds", {{"pool", name}, {"quantile", "0.99"}}) == secs(s.run_time.p99));
    CHECK(p.value("offload_executor_run_time_max_seconds", l) == secs(s.run_time.max));
    CHECK(p.value("offload_executor_queue_wait_seconds", {{"pool", name}, {"quantile", "0.95"}}) ==
          secs(s.queue_wait.p95));
    CHECK(p.value("offload_executor_queue_wait_max_seconds", l) == secs(s.queue_wait.max));

    const auto& e = j["executors"][name];
    CHECK(e["workers"].u64() == s.workers);
    CHECK(e["busy"].u64() == s.busy);
    CHECK(e["queued"].u64() == s.queued);
    CHECK(e["max_queued"].u64() == s.max_queued);
    CHECK(e["submitted"].u64() == s.submitted);
    CHECK(e["completed"].u64() == s.completed);
    CHECK(e["failed"].u64() == s.failed);
    CHECK(e["cancelled"].u64() == s.cancelled);
    CHECK(e["crashes"].u64() == s.crashes);
    CHECK(e["respawns"].u64() == s.respawns);
    CHECK(e["kills"].u64() == s.kills);
    CHECK(e["bytes_sent"].u64() == s.bytes_sent);
    CHECK(e["bytes_received"].u64() == s.bytes_received);
    CHECK(e["run_time_ns"]["p50"].u64() == static_cast<unsigned long long>(s.run_time.p50.count()));
    CHECK(e["run_time_ns"]["p95"].u64() == static_cast<unsigned long long>(s.run_time.p95.count()));
    CHECK(e["run_time_ns"]["p99"].u64() == static_cast<unsigned long long>(s.run_time.p99.count()));
    CHECK(e["run_time_ns"]["max"].u64() == static_cast<unsigned long long>(s.run_time.max.count()));
    CHECK(e["queue_wait_ns"]["max"].u64() == static_cast<unsigned long long>(s.queue_wait.max.count()));
}

task<> use_pools(thread_pool& tp, process_pool& pp) {
    for (int i = 0; i < 5; ++i) {
        int v = co_await run_in_executor(tp, [i] { return i; });
        CHECK(v == i);
    }
    bool threw = false;
    try {
        co_await run_in_executor(tp, []() -> int { throw std::runtime_error("boom"); });
    } catch (const std::runtime_error&) {
        threw = true;
    }
    CHECK(threw);
    for (int i = 0; i < 4; ++i) {
        int v = co_await run_in_executor(pp, twice, i);
        CHECK(v == 2 * i);
    }
    // The counters settle just after the awaits resume (a worker marks itself idle after posting).
    bool settled = co_await offload::test::eventually([&] {
        auto a = tp.stats(), b = pp.stats();
        return a.busy == 0 && b.busy == 0 && a.completed == 5 && a.failed == 1 && b.completed == 4;
    });
    REQUIRE(settled);
}

} // namespace

TEST_CASE("metrics: Prometheus text and JSON of a thread pool and a process pool agree with their stats()",
          "[metrics]") {
    event_loop loop;
    thread_pool tp({.workers = 2});
    process_pool pp({.workers = 2});
    loop.run_until_complete(use_pools(tp, pp));

    metrics m;
    m.add("threads", tp);
    m.add(odd_name, pp);
    const std::string text = m.prometheus();
    const std::string js = m.json();
    INFO(text);
    const auto p = check_prometheus(text);
    const auto j = json_parser::parse(js);

    // The odd name is escaped in the text and reads back unchanged.
    CHECK(text.find("pool=\"a\\\"b\\\\c\\nd\"") != std::string::npos);
    CHECK(p.find("offload_executor_submitted_total", {{"pool", odd_name}}).size() == 1u);
    CHECK(p.types.at("offload_executor_submitted_total") == "counter");
    CHECK(p.types.at("offload_executor_busy") == "gauge");
    CHECK(p.types.at("offload_executor_run_time_seconds") == "gauge");

    const executor_stats ts = tp.stats(), ps = pp.stats();
    CHECK(ts.submitted == 6);
    CHECK(ts.failed == 1);
    CHECK(ps.completed == 4);
    CHECK(ps.bytes_sent > 0);
    check_executor(p, j, "threads", ts);
    check_executor(p, j, odd_name, ps);
}

TEST_CASE("metrics: a loop and a lag monitor render their counters, in both formats", "[metrics]") {
    event_loop loop;
    loop.set_debug(false);
    lag_monitor mon(1ms, 20ms);
    metrics m;
    m.add("main", loop);
    m.add("main", mon);
    auto body = [&]() -> task<> {
        mon.start();
        co_await sleep(5ms);
        offload::test::busy_wait(60ms); // one lag over the threshold
        co_await sleep(5ms);
        // Rendering and stats() run in one step: the loop's counters cannot move in between.
        const std::string text = m.prometheus();
        const std::string js = m.json();
        const loop_stats ls = loop.stats();
        const lag_stats lg = mon.stats();
        INFO(text);
        const auto p = check_prometheus(text);
        const auto j = json_parser::parse(js);
        const std::map<std::string, std::string> l{{"loop", "main"}};
        CHECK(lg.over_threshold >= 1);
        CHECK(ls.steps > 0);
        CHECK(ls.sleeps > 0);
        CHECK(p.value("offload_loop_steps_total", l) == static_cast<double>(ls.steps));
        CHECK(p.value("offload_loop_polls_total", l) == static_cast<double>(ls.polls));
        CHECK(p.value("offload_loop_sleeps_total", l) == static_cast<double>(ls.sleeps));
        CHECK(p.value("offload_loop_slow_steps_total", l) == 0.0);
        CHECK(p.value("offload_loop_tasks", l) == static_cast<double>(ls.tasks));
        CHECK(p.value("offload_loop_timers", l) == static_cast<double>(ls.timers));
        CHECK(p.value("offload_loop_debug", l) == 0.0);
        CHECK(p.value("offload_loop_lags_over_threshold_total", l) == static_cast<double>(lg.over_threshold));
        CHECK(p.value("offload_loop_lag_samples_total", l) == static_cast<double>(lg.samples));
        CHECK(p.value("offload_loop_lag_max_seconds", l) == static_cast<double>(lg.max.count()) / 1e9);
        CHECK(p.value("offload_loop_lag_threshold_seconds", l) == 0.02);
        CHECK(p.find("offload_loop_lag_seconds", l).size() == 3u);
        CHECK(j["loops"]["main"]["steps"].u64() == ls.steps);
        CHECK(j["loops"]["main"]["sleeps"].u64() == ls.sleeps);
        CHECK(j["loops"]["main"]["debug"].kind == offload::test::json_value::boolean);
        CHECK(j["lag_monitors"]["main"]["over_threshold"].u64() == lg.over_threshold);
        CHECK(j["lag_monitors"]["main"]["lag_ns"]["max"].u64() == static_cast<unsigned long long>(lg.max.count()));
        CHECK(j["lag_monitors"]["main"]["threshold_ns"].u64() == 20'000'000ull);
        mon.stop();
    };
    loop.run_until_complete(body());
}

TEST_CASE("metrics: counters and gauges of yours, with labels, grouped into one family each", "[metrics]") {
    metrics m;
    double hits = 3;
    m.add_counter("http_requests", "Requests served\nby route", [&] { return hits; }, {{"route", "/ping"}});
    m.add_gauge("in_flight", "Offloads in flight", [] { return 2.5; });
    m.add_counter("http_requests", "ignored: the first help wins", [] { return 7.0; }, {{"route", "/cpu"}});
    m.add_gauge("weird", "Not finite", [] { return std::numeric_limits<double>::infinity(); }, {{"k", "x\\y"}});
    m.add_gauge("weird", "Not finite", [] { return std::numeric_limits<double>::quiet_NaN(); }, {{"k", "z"}});
    const std::string text = m.prometheus();
    INFO(text);
    const auto p = check_prometheus(text);
    CHECK(p.types.at("http_requests_total") == "counter");
    CHECK(p.types.at("in_flight") == "gauge");
    CHECK(p.value("http_requests_total", {{"route", "/ping"}}) == 3.0);
    CHECK(p.value("http_requests_total", {{"route", "/cpu"}}) == 7.0);
    CHECK(p.value("in_flight", {}) == 2.5);
    CHECK(p.find("weird", {{"k", "x\\y"}}).at(0).value == "+Inf");
    CHECK(p.find("weird", {{"k", "z"}}).at(0).value == "NaN");
    CHECK(text.find("# HELP http_requests_total Requests served\\nby route\n") != std::string::npos);

    const auto j = json_parser::parse(m.json());
    REQUIRE(j["counters"].items.size() == 2u);
    CHECK(j["counters"].items[0]["name"].text == "http_requests_total");
    CHECK(j["counters"].items[0]["labels"]["route"].text == "/ping");
    CHECK(j["counters"].items[0]["value"].num() == 3.0);
    REQUIRE(j["gauges"].items.size() == 3u);
    CHECK(j["gauges"].items[1]["value"].kind == offload::test::json_value::null);
    CHECK(j["gauges"].items[1]["labels"]["k"].text == "x\\y");

    hits = 4; // read anew at each render
    CHECK(check_prometheus(m.prometheus()).value("http_requests_total", {{"route", "/ping"}}) == 4.0);

    CHECK(m.remove("weird") == 2u);
    CHECK(check_prometheus(m.prometheus()).find("weird").empty());
    CHECK(m.remove("weird") == 0u);
}

TEST_CASE("metrics: bad names, duplicates and type clashes are refused with a clear error", "[metrics]") {
    metrics m;
    auto one = [] { return 1.0; };
    CHECK_THROWS_AS(m.add_counter("9lives", "h", one), std::invalid_argument);
    CHECK_THROWS_AS(m.add_counter("has space", "h", one), std::invalid_argument);
    CHECK_THROWS_AS(m.add_gauge("offload_mine", "h", one), std::invalid_argument);
    CHECK_THROWS_AS(m.add_gauge("ok", "h", one, {{"__reserved", "v"}}), std::invalid_argument);
    CHECK_THROWS_AS(m.add_gauge("ok", "h", one, {{"a", "1"}, {"a", "2"}}), std::invalid_argument);
    CHECK_THROWS_AS(m.add_gauge("ok", "h", {}), std::invalid_argument);
    m.add_counter("jobs", "h", one);
    CHECK_THROWS_AS(m.add_counter("jobs_total", "h", one), std::invalid_argument); // the same series
    CHECK_THROWS_AS(m.add_gauge("jobs_total", "h", one), std::invalid_argument);   // another type
    thread_pool tp({.workers = 1});
    m.add("p", tp);
    CHECK_THROWS_AS(m.add("p", tp), std::invalid_argument);
    try {
        m.add("p", tp);
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("remove(\"p\")") != std::string::npos);
    }
    CHECK(m.remove("p") == 1u);
    m.add("p", tp); // free again
    check_prometheus(m.prometheus());
}

TEST_CASE("metrics: an empty registry renders nothing, and valid empty JSON", "[metrics]") {
    metrics m;
    CHECK(m.prometheus().empty());
    const auto j = json_parser::parse(m.json());
    CHECK(j["executors"].members.empty());
    CHECK(j["counters"].items.empty());
    CHECK(prometheus_content_type == "text/plain; version=0.0.4; charset=utf-8");
}
