// offload/detail/loop/core.hpp — the event loop's machinery, which every
// awaitable and executor of the library builds on; <offload/event_loop.hpp>
// is the public face over it. One loop per thread. Every wait is one epoll
// wait: an eventfd for wake-ups from other threads (remote_queue), a
// signalfd for signals (signal_set), user fds (fd_table); timers become the
// epoll timeout (nanosecond resolution with epoll_pwait2). The loop thread
// only runs steps: coroutine resumptions and callbacks.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/config.hpp>
#include <offload/detail/base/env.hpp>
#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/base/ring_queue.hpp>
#include <offload/detail/base/small_function.hpp>
#include <offload/detail/base/spin.hpp>
#include <offload/detail/base/system_error.hpp>
#include <offload/detail/base/timer_heap.hpp>
#include <offload/detail/loop/fd_table.hpp>
#include <offload/detail/loop/remote_queue.hpp>
#include <offload/detail/loop/signal_set.hpp>
#include <offload/detail/loop/stall_watch.hpp>
#include <offload/detail/loop/task_context.hpp>
#include <offload/errors.hpp>
#include <offload/slow_callback.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace offload {
class thread_pool;
class process_pool;
} // namespace offload

namespace offload::detail {

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

/// Type-erased ownership of an executor the loop owns (its default thread pool).
struct executor_holder {
    virtual ~executor_holder() = default;
};

class loop_core;

/// The loop's own counters (event_loop::stats() reads them). Plain integers,
/// written and read on the loop thread only: counting costs an increment.
struct loop_counters {
    std::uint64_t steps = 0;      // steps run: resumptions, callbacks, timer and fd callbacks
    std::uint64_t polls = 0;      // epoll waits (zero-timeout polls included)
    std::uint64_t sleeps = 0;     // polls that could block: nothing was ready and no completion came during the spin
    std::uint64_t slow_steps = 0; // debug mode: steps that took slow_callback_duration or longer
};

/// A call_later / call_at callback: a timer node shared (reference-counted)
/// by the loop's heap and the timer_handles that can cancel it.
struct callback_timer final : timer_node {
    loop_core* loop = nullptr;
    small_function fn;
    int refs = 1; // the heap's (while queued) plus one per timer_handle
    bool cancelled = false;
    void fire() override;
    void discard() noexcept override { unref(); }
    void cancel() noexcept;
    void unref() noexcept {
        if (--refs == 0) delete this;
    }
};

class loop_core {
public:
    loop_core();
    loop_core(const loop_core&) = delete;
    loop_core& operator=(const loop_core&) = delete;
    ~loop_core();

    /// The loop running on this thread, or nullptr.
    static loop_core* current() noexcept { return tls.loop; }
    /// The loop running on this thread; std::logic_error naming `what` when none is.
    static loop_core& require_current(const char* what) {
        if (loop_core* l = tls.loop) [[likely]]
            return *l;
        no_loop(what);
    }

    // --- steps ------------------------------------------------------------------
    /// Queues the resumption of `h` as a step of the task `ctx`.
    void schedule(task_context* ctx, std::coroutine_handle<> h) {
        ready_.emplace_back([ctx, h] {
            tls.ctx = ctx;
            if (ctx) tls.resumed_at = ctx->suspended_at;
            h.resume();
        });
    }
    /// Queues a plain callback (FIFO, after what is queued already).
    void post(small_function fn) { ready_.emplace_back(std::move(fn)); }

    /// In debug mode, throws std::logic_error when called from a thread other
    /// than the loop's: loop-local objects are not thread-safe.
    void check_thread(const char* what) const {
        // The address of a thread_local names the thread, and is cheaper to
        // get than std::this_thread::get_id() (a libc call).
        if (debug_ && &tls != owner_)
            throw std::logic_error(std::string("offload: ") + what +
                                   " was used from a thread that does not run its event loop; it is loop-local. "
                                   "Use event_loop::call_soon_threadsafe to reach the loop from other threads");
    }

    // --- tasks ------------------------------------------------------------------
    /// The tasks of this loop (to cancel leftovers and tear down pending frames).
    intrusive_list<task_record>& tasks() noexcept { return tasks_; }
    /// A finished task hands its loop reference back here; it is dropped after
    /// the current step, so step diagnostics can still read the task's name.
    void retire(task_record* t) { retired_.push_back(t); }

    // --- timers -----------------------------------------------------------------
    void add_timer(timer_node* n) { timers_.push(n); }
    void remove_timer(timer_node* n) noexcept { timers_.erase(n); }
    std::size_t scheduled_timers() const noexcept { return timers_.size(); }
    /// Schedules `fn` at `when`; the node holds one reference for the heap.
    callback_timer* call_at(clock::time_point when, small_function fn);

    // --- fds and signals --------------------------------------------------------
    /// Calls `fn` whenever `fd` is ready for writing (`write`) or reading.
    /// `exclusive`: a second registration for the same direction is an error.
    void set_io(int fd, bool write, small_function fn, bool exclusive) {
        check_thread(write ? "event_loop::add_writer" : "event_loop::add_reader");
        fds_.set(fd, write, std::move(fn), exclusive);
    }
    bool clear_io(int fd, bool write) noexcept { return fds_.clear(fd, write); }
    /// Registers `fd` once, edge-triggered, for its owner `src` (see fd_table::attach).
    void attach_io(int fd, io_source* src) {
        check_thread("offload::async_fd");
        fds_.attach(fd, src);
    }
    void detach_io(int fd) noexcept { fds_.detach(fd); }
    /// How many epoll_ctl calls the loop's fd registrations made so far.
    std::uint64_t io_ctl_calls() const noexcept { return fds_.ctl_calls(); }
    /// The loop's counters (loop thread only).
    const loop_counters& counters() const noexcept { return counters_; }
    /// Steps queued to run now.
    std::size_t ready_steps() const noexcept { return ready_.size(); }
    void add_signal(int sig, std::function<void()> fn) {
        check_thread("event_loop::add_signal_handler");
        signals_.add(sig, std::move(fn), epfd_);
    }
    bool remove_signal(int sig) {
        check_thread("event_loop::remove_signal_handler");
        return signals_.remove(sig);
    }

    // --- completions from other threads ------------------------------------------
    /// Posts `n` to run on the loop; callable from any thread, never blocks.
    void post_remote(remote_node* n) noexcept { remote_.push(n); }
    /// Runs `fn` on the loop; callable from any thread (allocates one node).
    void call_soon_threadsafe(small_function fn);
    /// Loop thread: `delta` more (or fewer) remote completions are expected.
    /// While some are, an idle loop spins briefly before it sleeps, so a quick
    /// offload completes without a wake-up syscall on either side.
    void expect_remote(std::ptrdiff_t delta) noexcept {
        remote_pending_ = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(remote_pending_) + delta);
    }
    void set_spin_budget(std::chrono::nanoseconds d) noexcept {
        spin_budget_ = d;
        spinner_ = spinner(steady_spin_policy(d));
        io_spinner_ = spinner(io_spin_policy(d));
    }

    /// Registers / unregisters an observer told when the loop is destroyed.
    void add_observer(loop_observer* o) noexcept { observers_.push_back(o); }
    static void remove_observer(loop_observer* o) noexcept { intrusive_list<loop_observer>::erase(o); }

    // --- errors and diagnostics ---------------------------------------------------
    void set_exception_handler(exception_handler fn) { exception_handler_ = std::move(fn); }
    void call_exception_handler(const exception_context& ctx) noexcept;
    bool get_debug() const noexcept { return debug_; }
    void set_debug(bool on) {
        debug_ = on;
        update_watch();
    }
    void set_slow_callback_duration(clock::duration d) {
        slow_threshold_ = d;
        if (watch_) {
            watch_.reset();
            update_watch();
        }
    }
    clock::duration slow_callback_duration() const noexcept { return slow_threshold_; }
    void set_slow_callback_handler(slow_callback_handler fn) { reporter_.set_handler(std::move(fn)); }
    void set_stall_report_options(const stall_report_options& o) { reporter_.set_options(o); }
    stall_report_options get_stall_report_options() const { return reporter_.options(); }

    // --- running ------------------------------------------------------------------
    /// Makes this the loop of the calling thread (std::logic_error if one runs).
    void enter();
    void leave() noexcept;
    /// One iteration: poll, due timers, remote completions, ready steps.
    void run_once();
    void run_forever();
    void stop() noexcept { stopping_ = true; }
    bool stopping() const noexcept { return stopping_; }
    bool is_running() const noexcept { return running_; }
    /// Whether the calling thread is the loop's (the one that last ran it, or
    /// constructed it): where it is and the loop is not running, nothing runs
    /// what is posted to it until this thread runs it again.
    bool on_owner_thread() const noexcept { return owner_ == &tls; }

    // --- executors the loop knows -------------------------------------------------
    /// The default thread pool, owned by the loop (created by its first user).
    std::unique_ptr<executor_holder> default_pool;
    /// What offload() uses: a thread pool (null: the default one) or a process pool.
    thread_pool* default_thread_executor = nullptr;
    process_pool* default_process_executor = nullptr;

private:
    [[noreturn]] static void no_loop(const char* what);
    void poll(bool may_block);
    bool spin_for_completions(bool io_soon, epoll_event* evs, int& n);
    void run_timers();
    void drain_remote();
    void run_step(small_function& fn);
    // Both are off the per-step fast path: kept out of line so run_step stays small.
    [[gnu::cold]] void release_retired() noexcept {
        for (task_record* t : retired_) t->release();
        retired_.clear();
    }
    [[gnu::cold]] void report_slow(std::chrono::nanoseconds took, std::uint64_t step);
    [[gnu::cold]] void report_flagged_step(std::uint64_t step);
    static void describe_step(stall_capture& c) noexcept;
    void update_watch();

    // Steps. A task that keeps rescheduling itself cannot starve I/O: what a
    // step schedules waits for the next iteration.
    ring_queue<small_function> ready_;
    step_clock steps_;                   // what a debug step touches (see stall_watch.hpp)
    std::unique_ptr<stall_watch> watch_; // debug mode, from the first run on (tested on every step)
    intrusive_list<task_record> tasks_;
    std::vector<task_record*> retired_;
    loop_counters counters_;
    bool debug_ = false;
    const thread_state* owner_ = &tls; // the loop's thread (the constructor's until run)

    static int open_epoll();
    static int open_wake_eventfd(int epfd);
    int epfd_ = open_epoll();
    int wakefd_ = open_wake_eventfd(epfd_);
    bool running_ = false;
    bool stopping_ = false;
    bool have_pwait2_ = true;
    // Fair polling while work is ready (run_once): when the loop last polled,
    // and how often it reads the clock to see whether it is time again.
    clock::time_point last_poll_{};
    clock::time_point last_check_{};
    unsigned checks_skipped_ = 0;
    unsigned check_every_ = 1;

    timer_heap timers_;
    fd_table fds_{epfd_};
    signal_set signals_;
    remote_queue remote_{wakefd_};
    std::size_t remote_pending_ = 0;
    std::chrono::nanoseconds spin_budget_ = std::chrono::microseconds(50);
    // While completions are due from threads only: a steady spin that ends when
    // the loop loses its core. While fd events are due (process workers, which
    // may share the loop's core): the spin yields after each epoll_wait, and a
    // yield that lost a whole slice to a hog makes the next waits park at once.
    static spin_policy io_spin_policy(std::chrono::nanoseconds budget) noexcept {
        spin_policy p = steady_spin_policy(budget);
        p.deschedule_gap = p.yield_gap; // the spin yields (in spin_for_completions): a peer's turn is no lost core
        p.park_after_deschedule = 16;
        p.park_when_busy = true;
        return p;
    }
    spinner spinner_{steady_spin_policy(spin_budget_)};
    spinner io_spinner_{io_spin_policy(spin_budget_)};
    spinner* last_spinner_ = nullptr; // the one whose spin came before the sleep
    intrusive_list<loop_observer> observers_;

    clock::duration slow_threshold_ = std::chrono::milliseconds(100);
    // The slow-step handler and rate limit (loop and watchdog threads). Declared
    // after watch_, which uses it: ~loop_core stops the watchdog first. Kept
    // here, away from the fields every step touches.
    stall_reporter reporter_;
    exception_handler exception_handler_;
};

#if OFFLOAD_DEFINE_BODIES

// --- timers -------------------------------------------------------------------------

OFFLOAD_DECL void callback_timer::fire() {
    // The heap's reference is handed to this scope; a handle may hold another.
    struct drop {
        callback_timer* t;
        ~drop() { t->unref(); }
    } d{this};
    small_function f = std::move(fn);
    f();
}

OFFLOAD_DECL void callback_timer::cancel() noexcept {
    if (cancelled) return;
    cancelled = true;
    if (queued()) {
        loop->remove_timer(this);
        fn.reset();
        --refs; // the heap's reference; the caller's keeps the node alive
    }
}

OFFLOAD_DECL callback_timer* loop_core::call_at(clock::time_point when, small_function fn) {
    check_thread("event_loop::call_at");
    auto* n = new callback_timer;
    n->loop = this;
    n->deadline = when;
    n->fn = std::move(fn);
    timers_.push(n);
    return n;
}

// --- construction ---------------------------------------------------------------------

OFFLOAD_DECL int loop_core::open_epoll() {
    int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) throw_errno("offload: epoll_create1");
    return fd;
}

// The eventfd that other threads write to wake the loop; watched by `epfd`
// (closed when this fails, since the constructor will not finish).
OFFLOAD_DECL int loop_core::open_wake_eventfd(int epfd) {
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        ::close(epfd);
        throw_errno(e, "offload: eventfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    return fd;
}

OFFLOAD_DECL loop_core::loop_core() : debug_(debug_env_enabled()) {}

OFFLOAD_DECL loop_core::~loop_core() {
    watch_.reset(); // the watchdog uses reporter_, destroyed before watch_ would be
    // Tear down tasks that never finished while everything they may touch
    // (timers, fd table) is still alive; then let finished ones report.
    // Destroying one frame may drop the last reference to another task, so
    // hold a reference to each victim while we go.
    std::vector<task_record*> pending;
    tasks_.for_each([&](task_record* t) {
        if (!t->done) {
            t->retain();
            pending.push_back(t);
        }
    });
    for (auto* t : pending) t->abandon();
    release_retired();
    while (auto* o = observers_.pop_front()) o->loop_closing();
    for (auto* t : pending) t->release();
    tasks_.for_each([](task_record* t) { t->detach(); });
    fds_.close_owned(); // async_fds that outlive the loop forget it
    // The default pool joins its workers; abandoned calls finish without
    // posting back. Then nothing can reach the remote queue any more.
    default_pool.reset();
    remote_.wait_for_producers();
    while (!ready_.empty()) ready_.pop_front(); // drop queued callbacks (and resumptions of dead frames)
    while (!timers_.empty()) timers_.pop()->discard();
    for (remote_node* n = remote_.take_all(); n;) std::exchange(n, n->next)->discard();
    ::close(wakefd_);
    ::close(epfd_);
}

OFFLOAD_DECL void loop_core::no_loop(const char* what) {
    throw std::logic_error(fmt::format("offload: {} needs a running event loop on this thread; run your coroutine "
                                       "with offload::run(...) or event_loop::run_until_complete(...)",
                                       what));
}

// --- cross-thread posts ---------------------------------------------------------------

namespace core_impl {
struct fn_remote_node final : remote_node {
    small_function fn;
    explicit fn_remote_node(small_function f) noexcept : fn(std::move(f)) {}
    void run_on_loop() override {
        std::unique_ptr<fn_remote_node> self(this);
        fn();
    }
    void discard() noexcept override { delete this; }
};
} // namespace core_impl

OFFLOAD_DECL void loop_core::call_soon_threadsafe(small_function fn) {
    post_remote(new core_impl::fn_remote_node(std::move(fn)));
}

// --- errors and diagnostics ------------------------------------------------------------

OFFLOAD_DECL void loop_core::call_exception_handler(const exception_context& c) noexcept {
    try {
        if (exception_handler_) {
            exception_handler_(c);
            return;
        }
    } catch (...) {
        std::fprintf(stderr, "offload: the exception handler itself threw; reporting the original error\n");
    }
    std::string what = "unknown exception";
    try {
        if (c.exception) std::rethrow_exception(c.exception);
    } catch (const std::exception& e) {
        what = e.what();
    } catch (const cancelled_error& e) { // not a std::exception, on purpose
        what = e.what();
    } catch (...) {
    }
    std::string task = c.task_name.empty() ? std::string() : " (task '" + c.task_name + "')";
    std::fprintf(stderr, "offload: %s%s: %s\n", c.message.c_str(), task.c_str(), what.c_str());
}

// Starts the stall watchdog when a debug loop runs, and keeps it (idle
// between runs) until debug mode is turned off or the loop is destroyed:
// starting a thread as each run begins and joining it as it ends would cost
// more than a short run itself (on a busy machine, the join alone waits for
// the watchdog to get a CPU).
OFFLOAD_DECL void loop_core::update_watch() {
    if (debug_ && running_ && !watch_) {
        steps_.set_idle(false);
        watch_ = std::make_unique<stall_watch>(steps_, slow_threshold_, reporter_, &describe_step);
    } else if (!debug_ && watch_) {
        watch_.reset();
    }
}

// The watchdog flagged the step that just ended: time it, report it if slow.
OFFLOAD_DECL void loop_core::report_flagged_step(std::uint64_t step) {
    const auto took = steps_.took();
    if (took >= slow_threshold_) {
        ++counters_.slow_steps;
        report_slow(took, step);
    }
}

// In the stall signal's handler, on the loop thread mid-step: copy what names
// the step into the slot (async-signal-safe: no allocation, only loads).
OFFLOAD_DECL void loop_core::describe_step(stall_capture& c) noexcept {
    const char* name = "<callback>";
    std::size_t len = 10;
    c.resumed_at = {};
    if (const task_context* t = tls.ctx) {
        name = t->name.empty() ? "<unnamed task>" : t->name.data();
        len = t->name.empty() ? 14 : t->name.size();
        c.resumed_at = tls.resumed_at;
    }
    len = std::min(len, sizeof c.task);
    for (std::size_t i = 0; i < len; ++i) c.task[i] = name[i];
    c.task_len = len;
}

OFFLOAD_DECL void loop_core::report_slow(std::chrono::nanoseconds took, std::uint64_t step) {
    slow_callback_report r;
    r.duration = took;
    if (auto* c = tls.ctx) {
        r.task_name = c->name.empty() ? std::string("<unnamed task>") : c->name;
        r.resumed_at = tls.resumed_at;
        r.suspended_at = c->suspended_at;
    } else {
        r.task_name = "<callback>";
    }
    try {
        reporter_.deliver(r, step);
    } catch (...) {
        call_exception_handler({"exception in slow-callback handler", std::current_exception(), {}});
    }
}

// --- running ---------------------------------------------------------------------------

OFFLOAD_DECL void loop_core::enter() {
    if (tls.loop)
        throw std::logic_error("offload: an event loop is already running on this thread; a loop cannot be "
                               "run from inside a running loop (co_await the task instead of running it)");
    owner_ = &tls;
    tls.loop = this;
    if (debug_) {
        static thread_local const int tid = static_cast<int>(::gettid()); // one syscall per thread, not per run
        steps_.loop_tid.store(tid, std::memory_order_relaxed);
    }
    running_ = true;
    stopping_ = false;
    steps_.set_idle(false);
    update_watch();
}

OFFLOAD_DECL void loop_core::leave() noexcept {
    steps_.loop_tid.store(0, std::memory_order_relaxed);
    tls.loop = nullptr;
    tls.ctx = nullptr;
    running_ = false;
    stopping_ = false;
    steps_.set_idle(true); // the watchdog stays, with nothing to watch until the next run
}

OFFLOAD_DECL void loop_core::run_forever() {
    enter();
    struct guard {
        loop_core* l;
        ~guard() { l->leave(); }
    } g{this};
    while (!stopping_) run_once();
}

OFFLOAD_DECL void loop_core::run_once() {
    // While work is ready, poll fds (a zero-timeout epoll_wait, ~0.1 µs) only
    // once poll_budget has passed since the last poll: a task doing CPU steps
    // between sleep(0)s delays I/O, signals and process-pool completions by
    // at most one step plus the budget, and a chain of trivial steps is not
    // charged a syscall each. Reading the clock costs 20-50 ns, as much as a
    // trivial step, so it is read every check_every_ iterations: every one
    // when iterations are long (each took more than the budget), up to every
    // 32nd while they are tiny, so that the check costs under 2 ns a step.
    constexpr auto poll_budget = std::chrono::microseconds(50);
    constexpr unsigned max_check_every = 32;
    bool due = ready_.empty() || stopping_;
    if (!due && ++checks_skipped_ >= check_every_) {
        checks_skipped_ = 0;
        const auto now = clock::now();
        due = now - last_poll_ >= poll_budget;
        // Long iterations: look every time; short ones: back off, doubling.
        check_every_ = now - last_check_ >= poll_budget ? 1 : std::min(check_every_ * 2, max_check_every);
        last_check_ = now;
    }
    if (due) {
        poll(ready_.empty() && !stopping_);
        last_poll_ = last_check_ = clock::now();
        checks_skipped_ = 0;
    }
    run_timers();
    drain_remote();
    // Run what is ready now; what those steps schedule waits for the next iteration.
    for (std::size_t n = ready_.size(); n > 0 && !ready_.empty(); --n) {
        small_function fn = std::move(ready_.front());
        ready_.pop_front();
        run_step(fn);
    }
}

OFFLOAD_DECL void loop_core::run_step(small_function& fn) {
    ++counters_.steps;
    tls.ctx = nullptr;
    if (!watch_) {
        try {
            fn();
        } catch (...) {
            call_exception_handler({"exception in callback", std::current_exception(), {}});
        }
    } else {
        // No clock here: the stall watchdog flags a long step (see stall_watch.hpp).
        const std::uint64_t id = steps_.begin();
        try {
            fn();
        } catch (...) {
            call_exception_handler({"exception in callback", std::current_exception(), {}});
        }
        if (steps_.flagged(id)) [[unlikely]]
            report_flagged_step(id);
    }
    tls.ctx = nullptr;
    if (!retired_.empty()) release_retired();
}

// Completions are due from other threads or processes: spin a little before
// paying for a sleep and a wake-up (about 20-50 µs across cores). Expected fd
// events are polled with a zero-timeout epoll_wait every 8 polls, and then
// the spin yields, in case what we wait for runs on this core (see spin.hpp
// for what a yield to a hog costs, and how the spinner stops paying it).
OFFLOAD_DECL bool loop_core::spin_for_completions(bool io_soon, epoll_event* evs, int& n) {
    unsigned i = 0;
    last_spinner_ = io_soon ? &io_spinner_ : &spinner_;
    return last_spinner_->spin([&] {
        if (remote_.has_posts()) return true;
        if (io_soon && (++i & 7) == 0) {
            n = ::epoll_wait(epfd_, evs, 64, 0);
            if (n > 0) return true;
            yield_if_idle(); // only here: a completion shows up through epoll_wait, 8 polls on
        }
        return false;
    });
}

OFFLOAD_DECL void loop_core::poll(bool may_block) {
    // Timeout: 0 when work is ready, the next timer's distance, or forever.
    long long timeout_ns = 0;
    if (may_block) {
        if (timers_.empty()) {
            timeout_ns = -1;
        } else {
            auto d = timers_.top()->deadline - clock::now();
            timeout_ns = d.count() > 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(d).count() : 0;
        }
    }
    bool io_soon = false; // an observer expects an fd event (a process-pool result)
    if (timeout_ns != 0 && spin_budget_.count() > 0)
        observers_.for_each([&io_soon](loop_observer* o) { io_soon = io_soon || o->expects_io(); });
    epoll_event evs[64];
    int n = -1;
    const bool spun = timeout_ns != 0 && (remote_pending_ > 0 || io_soon) && spin_budget_.count() > 0;
    if (spun && spin_for_completions(io_soon, evs, n) && n <= 0) timeout_ns = 0; // a remote completion arrived
    const bool sleeping = n <= 0 && timeout_ns != 0;
    if (sleeping && !remote_.prepare_sleep()) timeout_ns = 0;
    ++counters_.polls;
    counters_.sleeps += sleeping && timeout_ns != 0 ? 1 : 0; // an epoll wait that may block (parks the thread)
    if (watch_ && sleeping && timeout_ns != 0) steps_.set_idle(true);
    for (; n <= 0;) {
        if (have_pwait2_) {
            timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000), static_cast<long>(timeout_ns % 1'000'000'000)};
            n = ::epoll_pwait2(epfd_, evs, 64, timeout_ns < 0 ? nullptr : &ts, nullptr);
            if (n < 0 && errno == ENOSYS) {
                have_pwait2_ = false;
                continue;
            }
        } else {
            // Round up so we never wake before the timer is due.
            int ms = timeout_ns < 0 ? -1 : static_cast<int>((timeout_ns + 999'999) / 1'000'000);
            n = ::epoll_wait(epfd_, evs, 64, ms);
        }
        if (n >= 0 || errno != EINTR) break;
    }
    if (sleeping) remote_.woke();
    if (spun && sleeping && last_spinner_) last_spinner_->woke(); // how long the sleep lasted teaches the spin
    if (watch_) steps_.set_idle(false);
    if (n < 0) throw_errno("offload: epoll_wait");
    auto step = [this](small_function& fn) { run_step(fn); };
    for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == wakefd_) {
            std::uint64_t v;
            [[maybe_unused]] auto r = ::read(wakefd_, &v, sizeof v);
        } else if (fd == signals_.fd()) {
            signals_.dispatch(step);
        } else {
            fds_.dispatch(fd, evs[i].events, step);
        }
    }
}

OFFLOAD_DECL void loop_core::run_timers() {
    if (timers_.empty()) return;
    auto now = clock::now();
    // Only timers due now: one that re-arms itself for "now" runs next iteration.
    std::size_t budget = timers_.size();
    while (budget-- > 0 && !timers_.empty() && timers_.top()->deadline <= now) {
        timer_node* t = timers_.pop();
        small_function step([t] { t->fire(); });
        run_step(step);
    }
}

OFFLOAD_DECL void loop_core::drain_remote() {
    remote_node* fifo = remote_.take_all();
    if (!fifo) return;
    // A step that runs the node, or discards it if the loop dies first.
    struct remote_step {
        remote_node* n;
        explicit remote_step(remote_node* node) noexcept : n(node) {}
        remote_step(remote_step&& o) noexcept : n(std::exchange(o.n, nullptr)) {}
        ~remote_step() {
            if (n) n->discard();
        }
        void operator()() { std::exchange(n, nullptr)->run_on_loop(); }
    };
    while (fifo) ready_.emplace_back(remote_step(std::exchange(fifo, fifo->next)));
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
