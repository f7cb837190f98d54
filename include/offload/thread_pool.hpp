// offload/thread_pool.hpp — thread_pool, the executor behind to_thread and
// run_in_executor for blocking or CPU-heavy calls, and the loop's default
// thread pool. The machinery (a lock-free ring to spinning-then-parked
// workers, bounded-queue admission) is in detail/threads/.
#pragma once

#include <offload/available_cpus.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/threads/pool_core.hpp>
#include <offload/event_loop.hpp>
#include <offload/executor.hpp>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <string>

namespace offload {

/// Options of a thread_pool; every field has a default, so `thread_pool{}` works.
struct thread_pool_options {
    /// Worker threads; 0 means available_cpus().
    std::size_t workers = 0;
    /// Calls that may wait in the queue; 0 = unbounded. When full, a submitting
    /// coroutine suspends until a slot frees (backpressure); the loop never blocks.
    std::size_t max_queued = 0;
    /// Thread name prefix (pthread_setname_np; names are cut to 15 characters).
    std::string name = "offload";
    /// How much each worker raises its niceness as it starts (setpriority on
    /// its own thread; like `nice -n`): 0 to 19, else std::invalid_argument.
    /// With as many busy workers as cores, a nice worker yields its core to
    /// the loop's thread as soon as that wakes, instead of at the end of its
    /// time slice (milliseconds); it also yields to every other nice-0
    /// process, so a pool on a busy machine gets less CPU. See bench_lag.
    int nice = 0;
};

class thread_pool;

namespace detail {
/// The machinery under a public thread_pool (for the library's own layers).
inline thread_pool_core& core_of(thread_pool& pool) noexcept;
} // namespace detail

/// A pool of worker threads that runs offloaded calls.
///
/// Thread safety: submissions may come from any number of loops on any
/// threads; stats() and shutdown() may be called from any thread.
/// Cancellation: a queued call that is cancelled never runs; a running call
/// is asked to stop through its std::stop_token (if it takes one), and its
/// awaiter resumes at once with cancelled_error while the worker stays counted
/// as busy until the call really returns.
/// Example: `thread_pool pool({.workers = 4, .max_queued = 64, .name = "io"});`
/// A CPU-bound pool beside a latency-sensitive loop: `thread_pool cpu({.nice = 10});`
class thread_pool {
public:
    /// Starts `opts.workers` threads (0: available_cpus()).
    explicit thread_pool(thread_pool_options opts = {})
        : core_(opts.workers ? opts.workers : available_cpus(), opts.max_queued, std::move(opts.name), opts.nice) {}
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    /// shutdown(true): runs what is queued, then joins the workers.
    ~thread_pool() = default;

    /// Stops accepting calls (they fail with executor_closed). With
    /// `cancel_pending`, every queued call resolves with executor_closed at once.
    /// With `wait`, returns once the workers have exited (not from a worker of
    /// this pool: std::logic_error). Callable from any thread, more than once.
    void shutdown(bool wait = true, bool cancel_pending = false) { core_.shutdown(wait, cancel_pending); }

    /// A snapshot of the pool's counters and latency percentiles.
    executor_stats stats() const { return core_.stats(); }

    /// Number of worker threads.
    std::size_t workers() const noexcept { return core_.workers(); }
    /// The thread name prefix.
    const std::string& name() const noexcept { return core_.name(); }

private:
    friend detail::thread_pool_core& detail::core_of(thread_pool&) noexcept;
    detail::thread_pool_core core_;
};

namespace detail {
inline thread_pool_core& core_of(thread_pool& pool) noexcept { return pool.core_; }

template <>
inline constexpr bool is_builtin_executor_v<thread_pool> = true;

struct default_thread_pool_holder final : executor_holder {
    thread_pool pool;
    explicit default_thread_pool_holder(thread_pool_options o) : pool(std::move(o)) {}
};

/// The default thread pool of `loop`, created on first use.
inline thread_pool& default_thread_pool_of(loop_core& loop) {
    if (!loop.default_pool) {
        std::size_t n = std::min<std::size_t>(32, available_cpus() + 4);
        loop.default_pool = std::make_unique<default_thread_pool_holder>(
            thread_pool_options{.workers = n, .max_queued = 0, .name = "offload-default"});
    }
    return static_cast<default_thread_pool_holder&>(*loop.default_pool).pool;
}
} // namespace detail

/// The default thread pool of `loop` (the one to_thread uses), created on
/// first use with min(32, available_cpus() + 4) workers like asyncio's, and
/// shut down with the loop. Thread safety: call it on the loop's thread.
/// Example: `fmt::print("{}\n", offload::default_thread_pool().stats());`
inline thread_pool& default_thread_pool(event_loop& loop = event_loop::current()) {
    return detail::default_thread_pool_of(detail::core_of(loop));
}

} // namespace offload
