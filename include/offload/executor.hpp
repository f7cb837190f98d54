// offload/executor.hpp — the vocabulary every executor shares: the
// `executor` concept that run_in_executor accepts (with executor_work, what
// an executor of your own receives), and `executor_stats`, the
// counters and latency percentiles that thread_pool and process_pool report
// (asyncio has no such numbers; these are what you need to size a pool).
// to_string / fmt::formatter print the stats as one line for logs.
#pragma once

#include <offload/detail/base/config.hpp>

#include <offload/detail/base/cpu.hpp>
#include <offload/detail/base/latency_histogram.hpp>

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace offload {

/// Latency percentiles of an executor (queue wait or run time).
/// Percentiles come from a log-linear histogram: each is an upper bound at
/// most 12.5% above the true value; `max` is exact. All zero before any call.
struct latency_percentiles {
    /// Median.
    std::chrono::nanoseconds p50{};
    /// 95th percentile.
    std::chrono::nanoseconds p95{};
    /// 99th percentile.
    std::chrono::nanoseconds p99{};
    /// The largest value seen, exact.
    std::chrono::nanoseconds max{};
};

/// A snapshot of an executor's counters, taken by `stats()`.
///
/// Counters are cumulative since construction. Each call that is submitted
/// ends in exactly one of completed, failed or cancelled once it is resolved,
/// so `submitted - completed - failed - cancelled` calls are in flight
/// (queued or running). A call cancelled while running cannot be stopped
/// mid-way (a thread cannot be interrupted): it stays `busy` until the
/// callable really returns, and is counted then as `cancelled` (not completed
/// or failed), whatever it returned. A call cancelled while still queued is
/// counted as `cancelled` at once and never runs.
///
/// Thread safety: a plain value; each field was read atomically, but the
/// fields together are not one atomic cut (they may disagree by a call or two).
struct executor_stats {
    /// Worker threads or processes the executor has now.
    std::size_t workers = 0;
    /// Workers running a call now (including calls already cancelled that
    /// have not yet returned).
    std::size_t busy = 0;
    /// Calls submitted but not yet started.
    std::size_t queued = 0;
    /// The highest `queued` seen since construction.
    std::size_t max_queued = 0;

    /// Calls accepted (those refused with executor_closed are not counted).
    std::uint64_t submitted = 0;
    /// Calls that returned a value.
    std::uint64_t completed = 0;
    /// Calls that threw, or whose worker crashed or timed out.
    std::uint64_t failed = 0;
    /// Calls cancelled: while queued (at once, including shutdown with
    /// cancel_pending), or while running (when the callable really returns).
    std::uint64_t cancelled = 0;

    /// Process pools: workers that died unexpectedly (signal or exit).
    std::uint64_t crashes = 0;
    /// Process pools: workers started to replace a crashed, killed or
    /// recycled (max_tasks_per_child) one.
    std::uint64_t respawns = 0;
    /// Process pools: workers the pool killed itself (task_timeout, cancellation, shutdown).
    std::uint64_t kills = 0;
    /// Process pools: bytes of requests written to workers (socket and shared memory).
    std::uint64_t bytes_sent = 0;
    /// Process pools: bytes of results read back from workers.
    std::uint64_t bytes_received = 0;

    /// Time from submission to the start of the run.
    latency_percentiles queue_wait{};
    /// Time the callable ran (for process pools: request sent to result read).
    latency_percentiles run_time{};
};

namespace detail {
/// One offloaded call as an executor_work carries it (a thread call implements it).
struct work_item {
    /// Runs the call (or skips it, if it was cancelled meanwhile) and sends the outcome home.
    virtual void run() noexcept = 0;
    /// The executor will never run it: the call resolves with executor_closed.
    virtual void drop() noexcept = 0;

protected:
    ~work_item() = default;
};

/// True for the library's own executors (thread_pool, process_pool), which
/// run_in_executor drives directly; specialized next to each of them.
template <class E>
inline constexpr bool is_builtin_executor_v = false;

template <class>
inline constexpr bool always_false_v = false;

struct executor_work_access;
} // namespace detail

/// One offloaded call handed to an executor you wrote: call it once, on any
/// thread of yours. It runs the callable, stores the result (or the
/// exception) and resumes the awaiting task on its own loop. If the call was
/// cancelled while it waited in your queue, calling it does nothing.
/// Destroying it without calling it (your executor shut down, say) makes the
/// await throw executor_closed. Move-only.
/// Example: `void execute(offload::executor_work w) { queue_.push(std::move(w)); }`
class executor_work {
public:
    /// Takes over `o`'s call; `o` becomes empty.
    executor_work(executor_work&& o) noexcept : item_(o.item_) { o.item_ = nullptr; }
    /// Drops the call held (its await throws executor_closed), then takes over `o`'s.
    executor_work& operator=(executor_work&& o) noexcept {
        if (this != &o) {
            if (item_) item_->drop();
            item_ = o.item_;
            o.item_ = nullptr;
        }
        return *this;
    }
    executor_work(const executor_work&) = delete;
    executor_work& operator=(const executor_work&) = delete;
    ~executor_work() {
        if (item_) item_->drop();
    }

    /// Runs the call. Calling an empty (moved-from or already run) work does nothing.
    void operator()() noexcept {
        if (detail::work_item* i = item_) {
            item_ = nullptr;
            i->run();
        }
    }
    /// True until the work has been run, moved from or dropped.
    explicit operator bool() const noexcept { return item_ != nullptr; }

private:
    friend struct detail::executor_work_access;
    explicit executor_work(detail::work_item* item) noexcept : item_(item) {}
    detail::work_item* item_;
};

/// An executor: something run_in_executor, map and stats can hand work to.
/// thread_pool and process_pool model it; so does a type of yours with
///     executor_stats stats() const;       // what it has done (zeros are fine)
///     void shutdown(bool wait, bool cancel_pending);
///     void execute(offload::executor_work w);   // run w() once on some thread
/// Calls that run_in_executor gives such an executor follow to_thread's
/// contract (any callable, decay-copied arguments, std::stop_token).
template <class E>
concept executor = requires(E& e, const E& ce) {
    { ce.stats() } -> std::same_as<executor_stats>;
    e.shutdown(true, false);
} && (detail::is_builtin_executor_v<E> || requires(E& e, executor_work w) { e.execute(std::move(w)); });

namespace detail {
/// Wraps a work item (whose reference the work then owns).
struct executor_work_access {
    static executor_work adopt(work_item* item) noexcept { return executor_work(item); }
};

/// An executor of the user's: it runs calls through execute(executor_work).
template <class E>
concept user_executor = executor<E> && !is_builtin_executor_v<E>;
} // namespace detail

namespace detail {

/// p50 / p95 / p99 / max of a histogram snapshot.
OFFLOAD_DECL latency_percentiles percentiles_of(const latency_histogram::snapshot& s) noexcept;

/// p50 / p95 / p99 / max of a live histogram (reads a snapshot of it).
OFFLOAD_DECL latency_percentiles percentiles_of(const latency_histogram& h) noexcept;

/// The live counters behind executor_stats, shared by every executor: each
/// pool updates them where things happen and stats() reads one snapshot.
/// Grouped by writer, one cache line each, so that submissions (the loop) and
/// completions (workers) do not bounce one line between cores. Relaxed: each
/// counter is an independent statistic (see executor_stats).
struct executor_counters {
    alignas(cache_line) std::atomic<std::uint64_t> submitted{0}; // submitters
    std::atomic<std::size_t> queued_high_water{0};
    alignas(cache_line) std::atomic<std::size_t> queued{0}; // both sides
    alignas(cache_line) std::atomic<std::uint64_t> completed{0}; // workers
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> cancelled{0};
    std::atomic<std::size_t> busy{0};
    // Process pools only.
    std::atomic<std::uint64_t> crashes{0}, respawns{0}, kills{0}, bytes_sent{0}, bytes_received{0};
    latency_histogram queue_wait;
    latency_histogram run_time;

    /// One more call queued; moves the high-water mark (a CAS only when it moves).
    void note_queued() noexcept {
        std::size_t q = queued.fetch_add(1, std::memory_order_relaxed) + 1;
        std::size_t m = queued_high_water.load(std::memory_order_relaxed);
        while (q > m && !queued_high_water.compare_exchange_weak(m, q, std::memory_order_relaxed)) {
        }
    }

    /// The snapshot stats() returns, for an executor of `workers` workers.
    executor_stats snapshot(std::size_t workers) const noexcept {
        auto get = [](const auto& a) { return a.load(std::memory_order_relaxed); };
        executor_stats s;
        s.workers = workers;
        s.busy = get(busy);
        s.queued = get(queued);
        s.max_queued = get(queued_high_water);
        s.submitted = get(submitted);
        s.completed = get(completed);
        s.failed = get(failed);
        s.cancelled = get(cancelled);
        s.crashes = get(crashes);
        s.respawns = get(respawns);
        s.kills = get(kills);
        s.bytes_sent = get(bytes_sent);
        s.bytes_received = get(bytes_received);
        s.queue_wait = percentiles_of(queue_wait);
        s.run_time = percentiles_of(run_time);
        return s;
    }
};

/// A duration with a readable unit and 3 significant digits: "0", "850ns",
/// "12.3us", "4.56ms", "1.20s".
OFFLOAD_DECL std::string format_latency(std::chrono::nanoseconds d);

OFFLOAD_DECL std::string format_percentiles(const latency_percentiles& p);

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL latency_percentiles percentiles_of(const latency_histogram::snapshot& s) noexcept {
    auto ns = [](std::uint64_t v) {
        // Clamp: a nanoseconds rep is signed, and a clamped huge value must not wrap.
        constexpr auto top = static_cast<std::uint64_t>(std::chrono::nanoseconds::max().count());
        return std::chrono::nanoseconds(static_cast<std::chrono::nanoseconds::rep>(v > top ? top : v));
    };
    return {ns(s.percentile(50)), ns(s.percentile(95)), ns(s.percentile(99)), ns(s.max())};
}

OFFLOAD_DECL latency_percentiles percentiles_of(const latency_histogram& h) noexcept {
    return percentiles_of(h.take_snapshot());
}

OFFLOAD_DECL std::string format_latency(std::chrono::nanoseconds d) {
    auto n = d.count();
    if (n == 0) return "0";
    if (n > -1'000 && n < 1'000) return fmt::format("{}ns", n);
    auto v = static_cast<double>(n);
    const char* unit = "s";
    // Switch units at 999.5 (not 1000) so rounding never prints "1000us".
    if (n > -999'500 && n < 999'500) {
        v /= 1e3, unit = "us";
    } else if (n > -999'500'000 && n < 999'500'000) {
        v /= 1e6, unit = "ms";
    } else {
        v /= 1e9;
    }
    // Fixed precision by magnitude rather than {:g}, which prints 999.9 as "1e+03".
    double a = v < 0 ? -v : v;
    int decimals = a < 10 ? 2 : a < 100 ? 1 : 0;
    return fmt::format("{:.{}f}{}", v, decimals, unit);
}

OFFLOAD_DECL std::string format_percentiles(const latency_percentiles& p) {
    return fmt::format("p50={} p95={} p99={} max={}", format_latency(p.p50), format_latency(p.p95),
                       format_latency(p.p99), format_latency(p.max));
}

#endif // OFFLOAD_DEFINE_BODIES

}  // namespace detail

/// The stats as one readable line, e.g.
/// "workers=4 busy=1 queued=0 max_queued=3 submitted=10 completed=8 failed=1
///  cancelled=0 crashes=0 respawns=0 kills=0 bytes_sent=0 bytes_received=0
///  queue_wait{p50=1.2us p95=3.4us p99=5.1us max=7us}
///  run_time{p50=2.1ms p95=4ms p99=4ms max=4.02ms}" (without the line breaks).
OFFLOAD_DECL std::string to_string(const executor_stats& s);

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL std::string to_string(const executor_stats& s) {
    return fmt::format(
        "workers={} busy={} queued={} max_queued={} submitted={} completed={} failed={} cancelled={} "
        "crashes={} respawns={} kills={} bytes_sent={} bytes_received={} queue_wait{{{}}} run_time{{{}}}",
        s.workers, s.busy, s.queued, s.max_queued, s.submitted, s.completed, s.failed, s.cancelled, s.crashes,
        s.respawns, s.kills, s.bytes_sent, s.bytes_received, detail::format_percentiles(s.queue_wait),
        detail::format_percentiles(s.run_time));
}

#endif // OFFLOAD_DEFINE_BODIES

}  // namespace offload

/// \namespace fmt
/// The {fmt} library's namespace: offload specializes fmt::formatter there.

/// Formats executor_stats as to_string does: `fmt::print("{}\n", pool.stats());`.
template <>
struct fmt::formatter<offload::executor_stats> : fmt::formatter<std::string_view> {
    /// Writes to_string(s).
    template <class FormatContext>
    auto format(const offload::executor_stats& s, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(offload::to_string(s), ctx);
    }
};
