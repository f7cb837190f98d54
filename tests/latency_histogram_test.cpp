// Tests for offload/detail/base/latency_histogram.hpp: bucket layout, percentile
// error bound, concurrent recording (also run under TSan), clamping.
#include <offload/detail/base/latency_histogram.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <vector>

using offload::detail::latency_histogram;

namespace {

/// The exact p-th percentile of sorted values, by the same nearest-rank rule.
std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double p) {
    auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    rank = std::clamp<std::size_t>(rank, 1, sorted.size());
    return sorted[rank - 1];
}

/// Checks v <= reported <= 1.125 v for a few percentiles.
void check_within_bound(std::vector<std::uint64_t> values) {
    latency_histogram h;
    for (auto v : values) h.record(v);
    std::sort(values.begin(), values.end());
    auto snap = h.take_snapshot();
    REQUIRE(snap.count() == values.size());
    REQUIRE(snap.max() == values.back());
    for (double p : {1.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0}) {
        CAPTURE(p);
        auto exact = exact_percentile(values, p);
        auto got = snap.percentile(p);
        CAPTURE(exact, got);
        REQUIRE(got >= exact);
        REQUIRE(static_cast<double>(got) <= 1.125 * static_cast<double>(exact));
    }
}

}  // namespace

TEST_CASE("latency_histogram: every value lies within its bucket's bounds", "[latency_histogram]") {
    constexpr auto n = latency_histogram::bucket_count;
    STATIC_REQUIRE(latency_histogram::bucket_of(0) == 0);
    STATIC_REQUIRE(latency_histogram::bucket_of(7) == 7);
    STATIC_REQUIRE(latency_histogram::bucket_of(latency_histogram::max_trackable) == n - 1);
    STATIC_REQUIRE(latency_histogram::max_trackable >= 3'600'000'000'000ULL);  // covers one hour
    for (std::size_t i = 0; i < n; ++i) {
        auto lo = latency_histogram::lower_bound_of(i), hi = latency_histogram::upper_bound_of(i);
        CAPTURE(i, lo, hi);
        REQUIRE(lo <= hi);
        REQUIRE(latency_histogram::bucket_of(lo) == i);
        REQUIRE(latency_histogram::bucket_of(hi) == i);
        if (i + 1 < n) REQUIRE(latency_histogram::lower_bound_of(i + 1) == hi + 1);
        // The documented error bound: width <= lower bound / 8.
        if (lo >= 8) REQUIRE(static_cast<double>(hi) <= 1.125 * static_cast<double>(lo));
    }
}

TEST_CASE("latency_histogram: an empty histogram reports zero", "[latency_histogram]") {
    latency_histogram h;
    auto snap = h.take_snapshot();
    REQUIRE(h.count() == 0);
    REQUIRE(h.max() == 0);
    REQUIRE(snap.count() == 0);
    REQUIRE(snap.percentile(50) == 0);
    REQUIRE(snap.percentile(99) == 0);
    REQUIRE(snap.percentile(100) == 0);
    REQUIRE(latency_histogram::snapshot{}.percentile(50) == 0);
}

TEST_CASE("latency_histogram: small values are exact", "[latency_histogram]") {
    latency_histogram h;
    for (std::uint64_t v = 0; v < 8; ++v) h.record(v);
    auto snap = h.take_snapshot();
    REQUIRE(snap.percentile(50) == 3);  // rank 4 of 0..7
    REQUIRE(snap.percentile(100) == 7);
    REQUIRE(snap.percentile(0) == 0);
}

TEST_CASE("latency_histogram: a uniform distribution's percentiles are within 12.5%", "[latency_histogram]") {
    std::vector<std::uint64_t> values;
    for (std::uint64_t v = 1; v <= 100'000; ++v) values.push_back(v * 1'000);  // 1 us .. 100 ms
    check_within_bound(values);

    latency_histogram h;
    for (auto v : values) h.record(v);
    auto snap = h.take_snapshot();
    // p50 of 1..100 ms in 1 us steps is 50 ms; reported within +12.5%.
    REQUIRE(snap.percentile(50) >= 50'000'000);
    REQUIRE(snap.percentile(50) <= 56'250'000);
}

TEST_CASE("latency_histogram: a log-normal distribution's percentiles are within 12.5%", "[latency_histogram]") {
    std::mt19937_64 rng(42);
    std::lognormal_distribution<double> dist(std::log(200'000.0), 1.5);  // ~200 us median, long tail
    std::vector<std::uint64_t> values;
    for (int i = 0; i < 200'000; ++i) values.push_back(static_cast<std::uint64_t>(dist(rng)));
    check_within_bound(values);
}

TEST_CASE("latency_histogram: a bimodal distribution's percentiles land in the right mode", "[latency_histogram]") {
    latency_histogram h;
    for (int i = 0; i < 900; ++i) h.record(1'000);        // 90% at 1 us
    for (int i = 0; i < 100; ++i) h.record(50'000'000);   // 10% at 50 ms
    auto snap = h.take_snapshot();
    REQUIRE(snap.percentile(50) >= 1'000);
    REQUIRE(snap.percentile(50) <= 1'125);
    REQUIRE(snap.percentile(95) == 50'000'000);  // capped by the exact max
    REQUIRE(snap.percentile(99) == 50'000'000);
    REQUIRE(snap.max() == 50'000'000);
}

TEST_CASE("latency_histogram: concurrent recording from 8 threads loses no count", "[latency_histogram]") {
    latency_histogram h;
    constexpr int threads = 8, per_thread = 100'000;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&h, t] {
            for (int i = 0; i < per_thread; ++i) h.record(static_cast<std::uint64_t>(t * per_thread + i));
        });
    }
    for (auto& w : workers) w.join();
    REQUIRE(h.count() == 800'000);
    REQUIRE(h.max() == 799'999);
    auto snap = h.take_snapshot();
    REQUIRE(snap.count() == 800'000);
    REQUIRE(snap.percentile(100) == 799'999);
}

TEST_CASE("latency_histogram: snapshots can be read while others record", "[latency_histogram]") {
    latency_histogram h;
    std::atomic<bool> stop{false};
    std::thread writer([&] {
        for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) h.record(i % 1'000'000);
    });
    std::uint64_t last = 0;
    for (int i = 0; i < 200; ++i) {
        auto snap = h.take_snapshot();
        REQUIRE(snap.count() >= last);  // counters only grow
        last = snap.count();
        (void)snap.percentile(99);
    }
    stop = true;
    writer.join();
}

TEST_CASE("latency_histogram: huge values clamp to the top bucket without UB", "[latency_histogram]") {
    latency_histogram h;
    constexpr auto huge = std::numeric_limits<std::uint64_t>::max();
    h.record(huge);
    h.record(latency_histogram::max_trackable + 1);
    h.record(10);
    REQUIRE(latency_histogram::bucket_of(huge) == latency_histogram::bucket_count - 1);
    auto snap = h.take_snapshot();
    REQUIRE(snap.count() == 3);
    REQUIRE(snap.max() == huge);
    REQUIRE(snap.buckets()[latency_histogram::bucket_count - 1] == 2);
    REQUIRE(snap.percentile(100) == huge);  // the top bucket's bound is the exact max
    REQUIRE(snap.percentile(10) == 10);
    // Out-of-range and NaN percentiles are clamped, not UB.
    REQUIRE(snap.percentile(250) == huge);
    REQUIRE(snap.percentile(-3) == 10);
    REQUIRE(snap.percentile(std::numeric_limits<double>::quiet_NaN()) == 10);
}

TEST_CASE("latency_histogram: merging adds counts and keeps the larger max", "[latency_histogram]") {
    latency_histogram a, b;
    for (int i = 0; i < 10; ++i) a.record(100);
    for (int i = 0; i < 30; ++i) b.record(5'000);
    latency_histogram::counts raw{};
    a.merge_into(raw);
    b.merge_into(raw);
    std::uint64_t total = 0;
    for (auto n : raw) total += n;
    REQUIRE(total == 40);

    auto snap = a.take_snapshot();
    snap.merge(b.take_snapshot());
    REQUIRE(snap.count() == 40);
    REQUIRE(snap.max() == 5'000);
    REQUIRE(snap.percentile(25) <= 112);
    REQUIRE(snap.percentile(25) >= 100);
    REQUIRE(snap.percentile(50) >= 5'000);
}
