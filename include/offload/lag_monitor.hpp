// offload/lag_monitor.hpp — lag_monitor: measures how late the event loop
// serves a periodic timer (the loop's "lag"; what aiodebug and Node's
// monitorEventLoopDelay report). A step that blocks the loop shows up as one
// late firing. Samples go into a fixed log-linear histogram, so memory stays
// constant however long it runs.
#pragma once

#include <offload/detail/timer_heap.hpp>
#include <offload/event_loop.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace offload {

/// What a lag_monitor measured: the number of timer firings and the
/// percentiles of their lateness (actual firing time minus due time).
/// Percentiles are read from the histogram: within 12.5% above the true
/// value (never above `max`); `max` is exact.
struct lag_stats {
    std::size_t samples = 0;
    std::chrono::nanoseconds p50{0}, p95{0}, p99{0}, max{0};
};

/// Measures event-loop lag with a periodic timer on the loop it was started on.
///
/// Each firing records `now - due` and schedules the next one `interval` after
/// now (not after the old due time), so a 50 ms stall is one 50 ms sample, not
/// fifty. The timer node lives inside the monitor: sampling allocates nothing.
/// Memory: a fixed histogram of 8 sub-buckets per power of two (about 4 KiB).
///
/// Thread safety: loop-local; use it on the loop's thread (debug mode checks
/// stop() and stats() while it runs).
/// Cancellation: not an awaitable; stop() or destruction unschedules it. If the
/// loop is destroyed first, the monitor stops by itself and keeps its stats.
/// Example: `lag_monitor mon; mon.start(); … auto s = mon.stats(); fmt::print("{}\n", s.p99);`
class lag_monitor final : detail::timer_node {
public:
    /// A monitor that samples every `interval` once started.
    explicit lag_monitor(std::chrono::nanoseconds interval = std::chrono::milliseconds(1)) noexcept
        : interval_(std::max(interval, std::chrono::nanoseconds(1))) {}
    lag_monitor(const lag_monitor&) = delete;
    lag_monitor& operator=(const lag_monitor&) = delete;
    /// Stops the monitor.
    ~lag_monitor() { stop(); }

    /// Starts sampling on the loop running on this thread; returns at once.
    /// A no-op if already started. Throws std::logic_error when no loop runs.
    void start() {
        if (queued()) return;
        loop_ = &event_loop::current();
        deadline = event_loop::clock::now() + interval_;
        loop_->add_timer(this);
    }

    /// Stops sampling (the stats are kept). Harmless if not started.
    void stop() {
        if (!queued()) return; // not started, or its loop is gone
        loop_->check_thread("lag_monitor::stop");
        loop_->remove_timer(this);
    }

    /// True while sampling.
    bool running() const noexcept { return queued(); }

    /// Forgets every sample.
    void reset() noexcept {
        counts_.fill(0);
        samples_ = 0;
        max_ = 0;
    }

    /// The lateness percentiles of the samples so far.
    lag_stats stats() const {
        if (queued()) loop_->check_thread("lag_monitor::stats");
        lag_stats s;
        s.samples = samples_;
        s.max = std::chrono::nanoseconds(max_);
        s.p50 = percentile(0.50);
        s.p95 = percentile(0.95);
        s.p99 = percentile(0.99);
        return s;
    }

private:
    // Histogram: values 0..7 ns get one bucket each; above, each power of two
    // [2^e, 2^(e+1)) is split into 8 equal sub-buckets (HdrHistogram's idea
    // with 3 bits of precision): relative error at most 1/8.
    static constexpr int sub_bits = 3;
    static constexpr std::size_t subs = std::size_t{1} << sub_bits;
    static constexpr std::size_t bucket_count = subs + (64 - sub_bits) * subs;

    static std::size_t bucket_of(std::uint64_t v) noexcept {
        if (v < subs) return static_cast<std::size_t>(v);
        const int e = std::bit_width(v) - 1; // v in [2^e, 2^(e+1)), e >= sub_bits
        const std::size_t sub = static_cast<std::size_t>(v >> (e - sub_bits)) & (subs - 1);
        return subs + static_cast<std::size_t>(e - sub_bits) * subs + sub;
    }
    // The largest value that falls into bucket `i`.
    static std::uint64_t upper_of(std::size_t i) noexcept {
        if (i < subs) return i;
        const int shift = static_cast<int>((i - subs) / subs); // e - sub_bits
        const std::uint64_t sub = (i - subs) % subs;
        const std::uint64_t lower = (subs + sub) << shift;
        return lower + ((std::uint64_t{1} << shift) - 1);
    }

    std::chrono::nanoseconds percentile(double p) const noexcept {
        if (samples_ == 0) return std::chrono::nanoseconds(0);
        // The smallest value with at least ceil(p * n) samples at or below it.
        auto rank = static_cast<std::uint64_t>(p * static_cast<double>(samples_));
        if (static_cast<double>(rank) < p * static_cast<double>(samples_)) ++rank;
        rank = std::max<std::uint64_t>(rank, 1);
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += counts_[i];
            if (seen >= rank) return std::chrono::nanoseconds(std::min(upper_of(i), max_));
        }
        return std::chrono::nanoseconds(max_);
    }

    void fire() override {
        const auto now = event_loop::clock::now();
        const auto late = std::max(now - deadline, event_loop::clock::duration::zero());
        const auto v = static_cast<std::uint64_t>(std::chrono::nanoseconds(late).count());
        ++counts_[bucket_of(v)];
        ++samples_;
        max_ = std::max(max_, v);
        deadline = now + interval_;
        loop_->add_timer(this);
    }
    // The loop is being destroyed with our timer queued: we are stopped now.
    void discard() noexcept override { loop_ = nullptr; }

    std::chrono::nanoseconds interval_;
    event_loop* loop_ = nullptr;
    std::array<std::uint64_t, bucket_count> counts_{};
    std::size_t samples_ = 0;
    std::uint64_t max_ = 0;
};

} // namespace offload
