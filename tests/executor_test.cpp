// Tests for offload/executor.hpp: the executor concept, executor_work, the
// stats formatter, and percentiles_of over a latency histogram.
#include <offload/executor.hpp>

#include "user_executor.hpp"

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

using namespace std::chrono_literals;

namespace {

/// The least an executor needs: stats(), shutdown() and execute().
struct trivial_executor {
    offload::executor_stats stats() const { return {}; }
    void shutdown(bool /*wait*/ = true, bool /*cancel_pending*/ = false) {}
    void execute(offload::executor_work w) { w(); }
};

/// stats() and shutdown() but no way to run anything: not an executor.
struct no_execute {
    offload::executor_stats stats() const { return {}; }
    void shutdown(bool /*wait*/ = true, bool /*cancel_pending*/ = false) {}
};

/// execute() that takes something else.
struct wrong_execute {
    offload::executor_stats stats() const { return {}; }
    void shutdown(bool /*wait*/ = true, bool /*cancel_pending*/ = false) {}
    void execute(int) {}
};

/// stats() of the wrong type.
struct wrong_stats {
    int stats() const { return 0; }
    void shutdown() {}
};

/// No shutdown().
struct no_shutdown {
    offload::executor_stats stats() const { return {}; }
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

static_assert(offload::executor<trivial_executor>);
static_assert(!offload::executor<int>);
static_assert(!offload::executor<wrong_stats>);
static_assert(!offload::executor<no_shutdown>);
static_assert(!offload::executor<no_execute>);
static_assert(!offload::executor<wrong_execute>);
static_assert(offload::executor<offload_test::user_executor>);
static_assert(!offload::executor<std::string>);

TEST_CASE("executor: a type with stats(), shutdown() and execute() satisfies the concept", "[executor]") {
    STATIC_REQUIRE(offload::executor<trivial_executor>);
    STATIC_REQUIRE_FALSE(offload::executor<int>);
    trivial_executor e;
    auto s = e.stats();
    REQUIRE(s.submitted == 0);
    e.shutdown();
}

TEST_CASE("executor: default stats are all zero", "[executor]") {
    offload::executor_stats s;
    REQUIRE(s.workers == 0);
    REQUIRE(s.max_queued == 0);
    REQUIRE(s.bytes_received == 0);
    REQUIRE(s.queue_wait.p99 == 0ns);
    REQUIRE(s.run_time.max == 0ns);
}

TEST_CASE("executor: the stats print as one line naming every field", "[executor]") {
    offload::executor_stats s{.workers = 4,
                              .busy = 1,
                              .queued = 2,
                              .max_queued = 7,
                              .submitted = 100,
                              .completed = 90,
                              .failed = 3,
                              .cancelled = 4,
                              .crashes = 5,
                              .respawns = 6,
                              .kills = 8,
                              .bytes_sent = 1234,
                              .bytes_received = 5678,
                              .queue_wait = {.p50 = 850ns, .p95 = 12'300ns, .p99 = 4'560'000ns, .max = 2s},
                              .run_time = {.p50 = 1ms, .p95 = 2ms, .p99 = 3ms, .max = 4ms}};
    std::string line = offload::to_string(s);
    CAPTURE(line);
    REQUIRE(line.find('\n') == std::string::npos);
    for (const char* part : {"workers=4",           "busy=1",       "queued=2",  "max_queued=7",
                             "submitted=100",       "completed=90", "failed=3",  "cancelled=4",
                             "crashes=5",           "respawns=6",   "kills=8",   "bytes_sent=1234",
                             "bytes_received=5678", "queue_wait{",  "run_time{", "p50=850ns",
                             "p95=12.3us",          "p99=4.56ms",   "max=2.00s", "p50=1.00ms",
                             "max=4.00ms"}) {
        CAPTURE(part);
        REQUIRE(contains(line, part));
    }
    REQUIRE(fmt::format("{}", s) == line);
    REQUIRE(fmt::format("[{:>5}]", offload::executor_stats{}).size() > 5);  // string_view specs accepted
}

TEST_CASE("executor: durations print with a readable unit", "[executor]") {
    using offload::detail::format_latency;
    REQUIRE(format_latency(0ns) == "0");
    REQUIRE(format_latency(999ns) == "999ns");
    REQUIRE(format_latency(1'000ns) == "1.00us");
    REQUIRE(format_latency(999'999ns) == "1.00ms");
    REQUIRE(format_latency(999'400ns) == "999us");
    REQUIRE(format_latency(150ms) == "150ms");
    REQUIRE(format_latency(90s) == "90.0s");
}

TEST_CASE("executor: percentiles_of reads a latency histogram", "[executor]") {
    offload::detail::latency_histogram h;
    REQUIRE(offload::detail::percentiles_of(h).max == 0ns);
    for (std::uint64_t v = 1; v <= 1'000; ++v) h.record(v * 1'000);  // 1 us .. 1 ms
    auto p = offload::detail::percentiles_of(h);
    REQUIRE(p.p50 >= 500us);
    REQUIRE(p.p50 <= 563us);  // +12.5%
    REQUIRE(p.p95 >= 950us);
    REQUIRE(p.p99 >= 990us);
    REQUIRE(p.p99 <= 1ms);  // capped by the exact max
    REQUIRE(p.max == 1ms);
}

TEST_CASE("executor: percentiles_of clamps values beyond nanoseconds' range", "[executor]") {
    offload::detail::latency_histogram h;
    h.record(std::numeric_limits<std::uint64_t>::max());
    auto p = offload::detail::percentiles_of(h);
    REQUIRE(p.max == std::chrono::nanoseconds::max());
    REQUIRE(p.p50 == std::chrono::nanoseconds::max());
}
