// offload/event_loop.hpp — the single-threaded event loop (asyncio's loop).
// One loop per thread. Every wait is one epoll wait: an eventfd for wake-ups
// from other threads, a signalfd for signals, user fds; timers become the
// epoll timeout (nanosecond resolution with epoll_pwait2). The loop thread
// only runs coroutine steps and callbacks. Timer accuracy is that of the
// kernel's timer slack for the loop thread (50 µs by default; lower it with
// prctl(PR_SET_TIMERSLACK, ...) if you need tighter wake-ups).
#pragma once

#include <offload/detail/intrusive_list.hpp>
#include <offload/detail/scheduler.hpp>
#include <offload/detail/small_function.hpp>
#include <offload/detail/stall_watch.hpp>
#include <offload/detail/timer_heap.hpp>
#include <offload/errors.hpp>
#include <offload/slow_callback.hpp>
#include <offload/task.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <source_location>
#include <string>
#include <vector>

namespace offload {

class event_loop;
class thread_pool;
class process_pool;

/// What the loop's exception handler receives: an error no one else could catch
/// (an exception thrown by a callback, or by a task whose result nobody retrieved).
struct exception_context {
    std::string message;
    std::exception_ptr exception;
    std::string task_name; // empty for a plain callback
};

using exception_handler = std::function<void(const exception_context&)>;

namespace detail {
/// Type-erased ownership of the loop's default executors (defined with them).
struct executor_holder {
    virtual ~executor_holder() = default;
};

/// Something bound to a loop that must let go of it before it is destroyed
/// (a process pool registers fds and timers with the loop that uses it).
struct loop_observer : list_hook {
    /// The loop is being destroyed; its fds, timers and tasks are still valid.
    virtual void loop_closing() noexcept = 0;
    /// True while one of this observer's fds is due to become readable soon
    /// (a worker process is running a call): an idle loop then polls its fds
    /// for its spin budget before it sleeps, since waking a sleeping loop from
    /// another core costs tens of microseconds.
    virtual bool expects_io() const noexcept { return false; }

protected:
    ~loop_observer() = default;
};

/// A completion posted to a loop from another thread (intrusive, so an
/// executor can embed it in its work item and post without allocating).
struct remote_node {
    remote_node* next = nullptr;
    /// Runs on the loop thread, as one step.
    virtual void run_on_loop() = 0;
    /// The loop is destroyed before running the node.
    virtual void discard() noexcept = 0;

protected:
    ~remote_node() = default;
};

struct callback_timer final : timer_node {
    event_loop* loop = nullptr;
    small_function fn;
    int refs = 1; // the loop's (while queued) plus one per timer_handle
    bool cancelled = false;
    void fire() override;
    void discard() noexcept override { unref(); }
    void unref() noexcept {
        if (--refs == 0) delete this;
    }
};
} // namespace detail

/// A scheduled call_later / call_at callback; cancel() unschedules it.
/// Thread safety: use it on its loop's thread only.
class timer_handle {
public:
    timer_handle() noexcept = default;
    explicit timer_handle(detail::callback_timer* n) noexcept : n_(n) { ++n_->refs; }
    timer_handle(const timer_handle& o) noexcept : n_(o.n_) {
        if (n_) ++n_->refs;
    }
    timer_handle(timer_handle&& o) noexcept : n_(std::exchange(o.n_, nullptr)) {}
    timer_handle& operator=(timer_handle o) noexcept {
        std::swap(n_, o.n_);
        return *this;
    }
    ~timer_handle() {
        if (n_) n_->unref();
    }

    /// Unschedules the callback (and releases what it captured). Harmless after it ran.
    void cancel() noexcept;
    /// True once cancel() was called.
    bool cancelled() const noexcept { return n_ && n_->cancelled; }
    /// When the callback is (or was) due.
    detail::clock::time_point when() const noexcept { return n_ ? n_->deadline : detail::clock::time_point{}; }

private:
    detail::callback_timer* n_ = nullptr;
};

/// The event loop.
///
/// Thread safety: everything except call_soon_threadsafe must be called on the
/// thread that runs the loop (debug mode turns a violation into std::logic_error).
/// Example: `event_loop loop; int v = loop.run_until_complete(answer());`
class event_loop : public detail::scheduler {
public:
    using clock = detail::clock;
    using duration = clock::duration;
    using time_point = clock::time_point;

    event_loop();
    event_loop(const event_loop&) = delete;
    event_loop& operator=(const event_loop&) = delete;
    /// Destroys the frames of tasks still pending (asyncio warns about those) and closes fds.
    ~event_loop();

    /// The loop running on this thread. Throws std::logic_error when none is.
    static event_loop& current();
    /// The loop running on this thread, or nullptr.
    static event_loop* current_or_null() noexcept { return static_cast<event_loop*>(detail::tls.loop); }

    /// Runs the loop until `t` completes; returns its result or rethrows its exception.
    template <class T>
    T run_until_complete(task<T> t);
    /// Runs the loop until stop() is called.
    void run_forever();
    /// Makes run_forever return after the current iteration.
    void stop() noexcept { stopping_ = true; }
    bool is_running() const noexcept { return running_; }
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
    timer_handle call_at(time_point when, F&& fn);
    /// Runs `fn` on the loop; callable from any thread. Lock-free; writes the
    /// loop's eventfd only when the loop sleeps.
    template <class F>
    void call_soon_threadsafe(F&& fn);

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
    bool remove_writer(int fd) { return clear_io(fd, true); }

    /// Awaitable: resumes when `fd` is readable (or hung up / in error).
    /// Cancellation: unregisters and throws cancelled_error.
    [[nodiscard]] auto readable(int fd, std::source_location loc = std::source_location::current());
    /// Awaitable: resumes when `fd` is writable.
    [[nodiscard]] auto writable(int fd, std::source_location loc = std::source_location::current());

    /// Calls `fn` on the loop whenever signal `sig` arrives (through a signalfd).
    /// The signal is blocked in the calling thread; threads started later inherit
    /// that. Create the loop and its handlers before starting other threads, or
    /// block the signal in them, or a process-directed signal may hit one of them.
    template <class F>
    void add_signal_handler(int sig, F&& fn) {
        add_signal(sig, std::function<void()>(std::forward<F>(fn)));
    }
    /// Returns true if a handler was registered; restores the signal mask.
    bool remove_signal_handler(int sig);

    /// Debug mode: times every step and reports slow ones. Also on with env OFFLOAD_DEBUG=1.
    void set_debug(bool on) {
        debug_ = on;
        update_watch();
    }
    void set_slow_callback_duration(duration d) {
        slow_threshold_ = d;
        if (watch_) {
            watch_.reset();
            update_watch();
        }
    }
    duration slow_callback_duration() const noexcept { return slow_threshold_; }
    /// Where slow-step reports go (default: one line on stderr).
    void set_slow_callback_handler(slow_callback_handler fn) {
        slow_handler_ = fn ? std::move(fn) : slow_callback_handler(&detail::default_slow_callback_handler);
    }
    /// Where errors nobody caught go (default: one line on stderr).
    void set_exception_handler(exception_handler fn);
    /// Reports an error to the exception handler.
    void call_exception_handler(const exception_context& ctx) noexcept;

    /// Posts `n` to run on the loop; callable from any thread, never blocks.
    void post_remote(detail::remote_node* n) noexcept;
    /// Loop thread: `delta` more (or fewer) remote completions are expected.
    /// While some are, an idle loop spins briefly before it sleeps, so a quick
    /// offload completes without a wake-up syscall on either side.
    void expect_remote(std::ptrdiff_t delta) noexcept {
        remote_pending_ = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(remote_pending_) + delta);
    }
    /// How long an idle loop spins for expected completions before sleeping
    /// (default 50 µs; 0 disables spinning).
    void set_spin_budget(std::chrono::nanoseconds d) noexcept { spin_budget_ = d; }

    /// The loop's default thread pool (to_thread), created on first use with
    /// min(32, available_cpus() + 4) workers like asyncio's; shut down with the loop.
    /// Defined in <offload/thread_pool.hpp>.
    thread_pool& default_thread_pool();
    /// Makes `pool` the executor offload() uses (by default the default
    /// thread pool). The pool must outlive the loop's use of it.
    void set_default_executor(thread_pool& pool) noexcept {
        default_executor_ = &pool;
        default_process_pool_ = nullptr;
    }
    /// Makes offload() run calls in the worker processes of `pool`, as asyncio's
    /// loop.set_default_executor(ProcessPoolExecutor()) does. Such calls need a
    /// function pointer or captureless lambda and serializable arguments and
    /// result; offload() of anything else then throws std::logic_error (use
    /// to_thread for those). The pool must outlive the loop's use of it.
    void set_default_executor(process_pool& pool) noexcept {
        default_process_pool_ = &pool;
        default_executor_ = nullptr;
    }
    /// The thread pool offload() uses when no process pool is the default
    /// executor. Defined in <offload/thread_pool.hpp>.
    thread_pool& default_executor();
    /// The process pool offload() uses, or nullptr when it uses a thread pool.
    process_pool* default_process_pool() const noexcept { return default_process_pool_; }

    /// Registers / unregisters an observer told when the loop is destroyed.
    void add_observer(detail::loop_observer* o) noexcept { observers_.push_back(o); }
    static void remove_observer(detail::loop_observer* o) noexcept {
        detail::intrusive_list<detail::loop_observer>::erase(o);
    }

    /// Number of timers currently scheduled (call_later, call_at, sleeps).
    std::size_t scheduled_timers() const noexcept { return timers_.size(); }

    // internal: timers and fd waits used by the library's awaitables.
    void add_timer(detail::timer_node* n) { timers_.push(n); }
    void remove_timer(detail::timer_node* n) noexcept { timers_.erase(n); }
    void set_io(int fd, bool write, detail::small_function fn, bool exclusive);
    bool clear_io(int fd, bool write) noexcept;

private:
    struct fd_entry {
        detail::small_function cb[2]; // reader, writer
        unsigned gen[2] = {0, 0};     // bumped on every set/clear, to spot changes made by a callback
        bool running[2] = {false, false}; // cb[i] is out of its slot, running in dispatch_io (still registered)
        std::uint32_t events = 0;     // what epoll watches now
    };

    void run_once();
    void poll(bool may_block);
    void dispatch_io(int fd, std::uint32_t ev);
    void run_timers();
    void drain_threadsafe();
    void read_signals();
    void run_step(detail::small_function& fn);
    void report_slow(std::chrono::nanoseconds took);
    void update_watch();
    void update_epoll(int fd, fd_entry& e);
    void add_signal(int sig, std::function<void()> fn);
    void enter();
    void leave() noexcept;

    int epfd_ = -1;
    int wakefd_ = -1;
    int sigfd_ = -1;
    bool running_ = false;
    bool stopping_ = false;
    bool have_pwait2_ = true;
    unsigned skipped_polls_ = 0;
    std::unique_ptr<detail::stall_watch> watch_; // debug mode, while the loop runs

    detail::timer_heap timers_;
    std::vector<fd_entry> fds_;
    std::map<int, std::function<void()>> signals_;
    sigset_t sigmask_{};

    std::unique_ptr<detail::executor_holder> default_pool_;
    detail::intrusive_list<detail::loop_observer> observers_;
    thread_pool* default_executor_ = nullptr;
    process_pool* default_process_pool_ = nullptr;

    std::atomic<detail::remote_node*> ts_head_{nullptr};
    std::atomic<int> posting_{0}; // producers inside post_remote; the destructor waits for them
    std::size_t remote_pending_ = 0;
    std::chrono::nanoseconds spin_budget_ = std::chrono::microseconds(50);
    std::atomic<bool> sleeping_{false};

    duration slow_threshold_ = std::chrono::milliseconds(100);
    slow_callback_handler slow_handler_ = &detail::default_slow_callback_handler;
    exception_handler exception_handler_;
};

} // namespace offload

#include <offload/detail/event_loop_impl.hpp>
#include <offload/detail/root_task.hpp>
