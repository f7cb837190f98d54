// offload/lag_monitor.hpp — lag_monitor: measures how late the event loop
// serves a periodic timer (the loop's "lag"; what aiodebug and Node's
// monitorEventLoopDelay report). A step that blocks the loop shows up as one
// late firing. Samples go into a fixed log-linear histogram, so memory stays
// constant however long it runs.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/latency_histogram.hpp>
#include <offload/detail/base/timer_heap.hpp>
#include <offload/detail/loop/core.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace offload {

/// What a lag_monitor measured: the number of timer firings, the
/// percentiles of their lateness (actual firing time minus due time), and
/// how many firings were later than the monitor's threshold.
/// Percentiles are read from the histogram: within 12.5% above the true
/// value (never above `max`); `max` is exact.
struct lag_stats {
    /// Timer firings measured.
    std::size_t samples = 0;
    ///@{
    /// Lateness percentiles (median, 95th, 99th) and the exact maximum.
    std::chrono::nanoseconds p50{0}, p95{0}, p99{0}, max{0};
    ///@}
    /// Samples whose lateness exceeded `threshold` (exact, not from the histogram).
    std::uint64_t over_threshold = 0;
    /// The monitor's threshold (see lag_monitor's constructor).
    std::chrono::nanoseconds threshold{0};
};

/// Measures event-loop lag with a periodic timer on the loop it was started on.
///
/// Each firing records `now - due` and schedules the next one `interval` after
/// now (not after the old due time), so a 50 ms stall is one 50 ms sample, not
/// fifty. The timer node lives inside the monitor: sampling allocates nothing.
/// Memory: a fixed histogram of 8 sub-buckets per power of two (about 2.5 KiB).
///
/// Thread safety: loop-local; use it on the loop's thread (debug mode checks
/// stop() and stats() while it runs).
/// Cancellation: not an awaitable; stop() or destruction unschedules it. If the
/// loop is destroyed first, the monitor stops by itself and keeps its stats.
/// Example: `lag_monitor mon(1ms, 10ms); mon.start(); … auto s = mon.stats();
/// fmt::print("p99 {} and {} lags over 10 ms\n", s.p99, s.over_threshold);`
class lag_monitor final : detail::timer_node {
public:
    /// The default `threshold`: the same as the loop's default slow_callback_duration.
    static constexpr std::chrono::nanoseconds default_threshold = std::chrono::milliseconds(100);

    /// A monitor that samples every `interval` once started, and counts the
    /// samples later than `threshold` (lag_stats::over_threshold): the number
    /// to alert on, where percentiles hide rare stalls. A negative threshold is treated as 0.
    explicit lag_monitor(std::chrono::nanoseconds interval = std::chrono::milliseconds(1),
                         std::chrono::nanoseconds threshold = default_threshold) noexcept
        : interval_(std::max(interval, std::chrono::nanoseconds(1))),
          threshold_(std::max(threshold, std::chrono::nanoseconds(0))) {}
    lag_monitor(const lag_monitor&) = delete;
    lag_monitor& operator=(const lag_monitor&) = delete;
    /// Stops the monitor.
    ~lag_monitor() { stop(); }

    /// Starts sampling on the loop running on this thread; returns at once.
    /// A no-op if already started. Throws std::logic_error when no loop runs.
    void start() {
        if (queued()) return;
        loop_ = &detail::loop_core::require_current("lag_monitor::start");
        deadline = detail::clock::now() + interval_;
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

    /// Forgets every sample (and the count over the threshold).
    void reset() noexcept {
        lateness_.reset();
        over_threshold_ = 0;
    }

    /// The threshold given to the constructor.
    std::chrono::nanoseconds threshold() const noexcept { return threshold_; }

    /// The lateness percentiles of the samples so far.
    lag_stats stats() const {
        if (queued()) loop_->check_thread("lag_monitor::stats");
        const auto h = lateness_.take_snapshot();
        lag_stats s;
        s.samples = static_cast<std::size_t>(h.count());
        s.max = std::chrono::nanoseconds(h.max());
        s.p50 = std::chrono::nanoseconds(h.percentile(50));
        s.p95 = std::chrono::nanoseconds(h.percentile(95));
        s.p99 = std::chrono::nanoseconds(h.percentile(99));
        s.over_threshold = over_threshold_;
        s.threshold = threshold_;
        return s;
    }

private:
    void fire() override {
        const auto now = detail::clock::now();
        const auto late = std::max(now - deadline, detail::clock::duration::zero());
        const auto v = static_cast<std::uint64_t>(std::chrono::nanoseconds(late).count());
        lateness_.record(v);
        if (late > threshold_) ++over_threshold_;
        deadline = now + interval_;
        loop_->add_timer(this);
    }
    // The loop is being destroyed with our timer queued: we are stopped now.
    void discard() noexcept override { loop_ = nullptr; }

    std::chrono::nanoseconds interval_;
    std::chrono::nanoseconds threshold_;
    std::uint64_t over_threshold_ = 0; // loop thread only, like the histogram's writes
    detail::loop_core* loop_ = nullptr;
    detail::latency_histogram lateness_;
};

} // namespace offload
