// offload/event_loop.hpp — the single-threaded event loop (asyncio's loop).
// One loop per thread. Every wait is one epoll wait: an eventfd for wake-ups
// from other threads, a signalfd for signals, user fds; timers become the
// epoll timeout (nanosecond resolution with epoll_pwait2). The loop thread
// only runs coroutine steps and callbacks. Timer accuracy is that of the
// kernel's timer slack for the loop thread (50 µs by default; lower it with
// prctl(PR_SET_TIMERSLACK, ...) if you need tighter wake-ups).
// The machinery is in detail/loop/; this class is its public face.
#pragma once

#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/fd_awaiter.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/errors.hpp>
#include <offload/slow_callback.hpp>
#include <offload/task.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <source_location>
#include <stdexcept>
#include <utility>

namespace offload {

class event_loop;
class thread_pool;
class process_pool;

namespace detail {
/// The machinery under a public event_loop (for the library's own layers).
inline loop_core& core_of(event_loop& loop) noexcept;
} // namespace detail

/// A snapshot of the loop's own counters, taken by event_loop::stats().
/// Counters are cumulative since the loop was constructed; the last four
/// fields are values now. Thread safety: a plain value.
struct loop_stats {
    /// Steps run: coroutine resumptions, callbacks, timer and fd callbacks.
    std::uint64_t steps = 0;
    /// Waits for events (epoll), including the zero-timeout polls made while work is ready.
    std::uint64_t polls = 0;
    /// Polls that could block: the loop had nothing ready and parked its thread
    /// (after its spin, if any) until an event, a timer or a wake-up.
    std::uint64_t sleeps = 0;
    /// Debug mode only: steps that held the loop for slow_callback_duration or
    /// longer (each one reported to the slow-callback handler). Stays 0 outside debug mode.
    std::uint64_t slow_steps = 0;
    /// epoll_ctl calls made for fd registrations (add_reader, readable(), async_fd).
    std::uint64_t epoll_ctl_calls = 0;
    /// Tasks of this loop that have not finished.
    std::size_t tasks = 0;
    /// Steps queued to run now.
    std::size_t ready = 0;
    /// Timers scheduled now (call_later, call_at, sleeps, timeouts).
    std::size_t timers = 0;
    /// Whether debug mode is on.
    bool debug = false;
};

/// A scheduled call_later / call_at callback; cancel() unschedules it.
/// Thread safety: use it on its loop's thread only.
class timer_handle {
public:
    timer_handle() noexcept = default;
    /// Another handle to the same timer.
    timer_handle(const timer_handle& o) noexcept : n_(o.n_) {
        if (n_) ++n_->refs;
    }
    /// Takes over `o`'s timer; `o` becomes empty.
    timer_handle(timer_handle&& o) noexcept : n_(std::exchange(o.n_, nullptr)) {}
    /// Refers to `o`'s timer instead (dropping this handle does not cancel the old one).
    timer_handle& operator=(timer_handle o) noexcept {
        std::swap(n_, o.n_);
        return *this;
    }
    ~timer_handle() {
        if (n_) n_->unref();
    }

    /// Unschedules the callback (and releases what it captured). Harmless after it ran.
    void cancel() noexcept {
        if (n_) n_->cancel();
    }
    /// True once cancel() was called.
    bool cancelled() const noexcept { return n_ && n_->cancelled; }
    /// When the callback is (or was) due.
    std::chrono::steady_clock::time_point when() const noexcept {
        return n_ ? n_->deadline : std::chrono::steady_clock::time_point{};
    }

private:
    friend class event_loop;
    // Adopts the reference the loop's call_at took for us.
    explicit timer_handle(detail::callback_timer* n) noexcept : n_(n) { ++n_->refs; }

    detail::callback_timer* n_ = nullptr;
};

/// The event loop.
///
/// Thread safety: everything except call_soon_threadsafe must be called on the
/// thread that runs the loop (debug mode turns a violation into std::logic_error).
/// Example: `event_loop loop; int v = loop.run_until_complete(answer());`
class event_loop : private detail::loop_core {
public:
    /// The loop's clock (monotonic): time(), call_at and deadlines use it.
    using clock = std::chrono::steady_clock;
    /// A duration of the loop's clock.
    using duration = clock::duration;
    /// A point in time of the loop's clock.
    using time_point = clock::time_point;

    event_loop() = default;
    event_loop(const event_loop&) = delete;
    event_loop& operator=(const event_loop&) = delete;
    /// Destroys the frames of tasks still pending (asyncio warns about those) and closes fds.
    ~event_loop() = default;

    /// The loop running on this thread. Throws std::logic_error when none is.
    static event_loop& current() {
        if (auto* l = current_or_null()) return *l;
        throw std::logic_error("offload: no event loop is running on this thread; run your coroutine with "
                               "offload::run(...) or event_loop::run_until_complete(...)");
    }
    /// The loop running on this thread, or nullptr.
    static event_loop* current_or_null() noexcept { return static_cast<event_loop*>(loop_core::current()); }

    /// Runs the loop until `t` completes; returns its result or rethrows its exception.
    template <class T>
    T run_until_complete(task<T> t);
    /// Runs the loop until stop() is called.
    void run_forever() { loop_core::run_forever(); }
    /// Makes run_forever return after the current iteration.
    void stop() noexcept { loop_core::stop(); }
    /// True while run_forever or run_until_complete runs.
    bool is_running() const noexcept { return loop_core::is_running(); }
    /// The loop's clock (steady_clock).
    time_point time() const noexcept { return clock::now(); }

    /// Runs `fn` on the loop soon, after the callbacks already queued (FIFO).
    template <class F>
    void call_soon(F&& fn) {
        check_thread("event_loop::call_soon");
        post(detail::small_function(std::forward<F>(fn)));
    }
    /// Runs `fn` after `delay`; the handle cancels it.
    template <class F>
    timer_handle call_later(duration delay, F&& fn) {
        return call_at(time() + delay, std::forward<F>(fn));
    }
    /// Runs `fn` at `when`; the handle cancels it.
    template <class F>
    timer_handle call_at(time_point when, F&& fn) {
        return timer_handle(loop_core::call_at(when, detail::small_function(std::forward<F>(fn))));
    }
    /// Runs `fn` on the loop; callable from any thread. Lock-free; writes the
    /// loop's eventfd only when the loop sleeps.
    template <class F>
    void call_soon_threadsafe(F&& fn) {
        loop_core::call_soon_threadsafe(detail::small_function(std::forward<F>(fn)));
    }

    /// Calls `fn` whenever `fd` is readable (replaces an earlier reader).
    template <class F>
    void add_reader(int fd, F&& fn) {
        set_io(fd, false, detail::small_function(std::forward<F>(fn)), false);
    }
    /// Returns true if a reader was registered.
    bool remove_reader(int fd) { return clear_io(fd, false); }
    /// Calls `fn` whenever `fd` is writable (replaces an earlier writer).
    template <class F>
    void add_writer(int fd, F&& fn) {
        set_io(fd, true, detail::small_function(std::forward<F>(fn)), false);
    }
    /// Returns true if a writer was registered.
    bool remove_writer(int fd) { return clear_io(fd, true); }

    /// Awaitable: resumes when `fd` is readable (or hung up / in error).
    /// Level-triggered, registered for this one wait: it costs two epoll_ctl
    /// calls (add, remove). For an fd awaited again and again (a socket), own
    /// it with offload::async_fd (<offload/async_fd.hpp>): registered once,
    /// edge-triggered, no epoll_ctl per wait.
    /// Cancellation: unregisters and throws cancelled_error.
    [[nodiscard]] detail::fd_awaiter readable(int fd, std::source_location loc = std::source_location::current()) {
        return detail::fd_awaiter(this, fd, false, loc);
    }
    /// Awaitable: resumes when `fd` is writable (level-triggered, like readable()).
    [[nodiscard]] detail::fd_awaiter writable(int fd, std::source_location loc = std::source_location::current()) {
        return detail::fd_awaiter(this, fd, true, loc);
    }

    /// Calls `fn` on the loop whenever signal `sig` arrives (through a signalfd).
    /// The signal is blocked in the calling thread; threads started later inherit
    /// that. Create the loop and its handlers before starting other threads, or
    /// block the signal in them, or a process-directed signal may hit one of them.
    template <class F>
    void add_signal_handler(int sig, F&& fn) {
        add_signal(sig, std::function<void()>(std::forward<F>(fn)));
    }
    /// Returns true if a handler was registered; restores the signal mask.
    bool remove_signal_handler(int sig) { return remove_signal(sig); }

    /// Debug mode: reports slow steps. Also on with env OFFLOAD_DEBUG=1.
    void set_debug(bool on) { loop_core::set_debug(on); }
    /// True while debug mode is on.
    bool get_debug() const noexcept { return loop_core::get_debug(); }
    /// The threshold above which debug mode reports a step (default 100 ms).
    void set_slow_callback_duration(duration d) { loop_core::set_slow_callback_duration(d); }
    /// The current slow-step threshold.
    duration slow_callback_duration() const noexcept { return loop_core::slow_callback_duration(); }
    /// Where slow-step reports go (default: one line on stderr).
    void set_slow_callback_handler(slow_callback_handler fn) { loop_core::set_slow_callback_handler(std::move(fn)); }
    /// How debug mode reports slow steps: while they run (with the loop
    /// thread's backtrace, at 1x, 2x, 4x... the threshold) and the rate limit.
    /// Threading: ongoing reports call the slow-callback handler on the
    /// watchdog thread (never concurrently with another report); the
    /// end-of-step report calls it on the loop thread. The loop thread is
    /// interrupted by a real-time signal (SA_RESTART) even inside a system call.
    /// std::invalid_argument for a non-positive window or a signal that is not
    /// real-time.
    void set_stall_report_options(const stall_report_options& o) { loop_core::set_stall_report_options(o); }
    /// The current stall-report options.
    stall_report_options get_stall_report_options() const { return loop_core::get_stall_report_options(); }
    /// Where errors nobody caught go (default: one line on stderr).
    void set_exception_handler(exception_handler fn) { loop_core::set_exception_handler(std::move(fn)); }
    /// Reports an error to the exception handler.
    void call_exception_handler(const exception_context& ctx) noexcept { loop_core::call_exception_handler(ctx); }

    /// How long an idle loop spins for expected completions before sleeping
    /// (default 50 µs; 0 disables spinning).
    void set_spin_budget(std::chrono::nanoseconds d) noexcept { loop_core::set_spin_budget(d); }

    /// Makes `pool` the executor offload() uses (by default the loop's default
    /// thread pool, see default_thread_pool()). The pool must outlive the loop's use of it.
    void set_default_executor(thread_pool& pool) noexcept {
        default_thread_executor = &pool;
        default_process_executor = nullptr;
    }
    /// Makes offload() run calls in the worker processes of `pool`, as asyncio's
    /// loop.set_default_executor(ProcessPoolExecutor()) does. Such calls need a
    /// function pointer or captureless lambda and serializable arguments and
    /// result; offload() of anything else then throws std::logic_error (use
    /// to_thread for those). The pool must outlive the loop's use of it.
    void set_default_executor(process_pool& pool) noexcept {
        default_process_executor = &pool;
        default_thread_executor = nullptr;
    }
    /// The process pool offload() uses, or nullptr when it uses a thread pool.
    process_pool* default_process_pool() const noexcept { return default_process_executor; }

    /// Number of timers currently scheduled (call_later, call_at, sleeps).
    std::size_t scheduled_timers() const noexcept { return loop_core::scheduled_timers(); }

    /// The loop's counters: steps, polls, sleeps, slow steps, epoll_ctl calls,
    /// and tasks, ready steps and timers now. Counting costs the loop a plain
    /// increment; this call walks the loop's task list (O(tasks)).
    /// Thread safety: call it on the loop's thread (debug mode checks).
    /// Example: `auto s = loop.stats(); fmt::print("{} steps, {} sleeps\n", s.steps, s.sleeps);`
    loop_stats stats() {
        check_thread("event_loop::stats");
        const detail::loop_counters& c = counters();
        loop_stats s;
        s.steps = c.steps;
        s.polls = c.polls;
        s.sleeps = c.sleeps;
        s.slow_steps = c.slow_steps;
        s.epoll_ctl_calls = io_ctl_calls();
        tasks().for_each([&s](detail::task_record* t) { s.tasks += t->done ? 0 : 1; });
        s.ready = ready_steps();
        s.timers = loop_core::scheduled_timers();
        s.debug = get_debug();
        return s;
    }

private:
    friend detail::loop_core& detail::core_of(event_loop&) noexcept;
};

namespace detail {
inline loop_core& core_of(event_loop& loop) noexcept { return loop; }
} // namespace detail

template <class T>
T event_loop::run_until_complete(task<T> t) {
    enter();
    struct guard {
        event_loop* l;
        detail::task_state<T>* st = nullptr;
        ~guard() {
            if (st) st->release();
            l->leave();
        }
    } g{this};
    g.st = detail::spawn(*this, std::move(t), "main");
    g.st->retain();
    while (!g.st->done && !stopping()) run_once();
    if (!g.st->done)
        throw std::runtime_error("offload: event_loop::stop() was called before the task given to "
                                 "run_until_complete finished; use run_forever() for a loop that stop() ends");
    return g.st->result();
}

} // namespace offload
