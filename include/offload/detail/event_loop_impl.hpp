// offload/detail/event_loop_impl.hpp — out-of-line bodies of event_loop
// (asio's impl/ split: the class in event_loop.hpp reads on its own).
#pragma once

#include <offload/event_loop.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <system_error>
#include <unistd.h>

namespace offload {

namespace detail {
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

[[noreturn]] inline void throw_errno(const char* what) {
    throw std::system_error(errno, std::generic_category(), what);
}

inline void callback_timer::fire() {
    // The heap's reference is handed to this scope; the handle may hold another.
    struct drop {
        callback_timer* t;
        ~drop() { t->unref(); }
    } d{this};
    small_function f = std::move(fn);
    f();
}

// A waiter on one direction of one fd (event_loop::readable / writable).
struct fd_awaiter final : waiter {
    event_loop* el;
    int fd;
    bool write;
    bool registered = false;

    fd_awaiter(event_loop* l, int f, bool w, std::source_location loc) : waiter(loc), el(l), fd(f), write(w) {}
    // Movable until awaited (so it can be handed to gather or wait_for).
    fd_awaiter(fd_awaiter&& o) noexcept : waiter(o.where), el(o.el), fd(o.fd), write(o.write) {}
    fd_awaiter& operator=(const fd_awaiter&) = delete;
    ~fd_awaiter() { unregister(); }

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!arm(h)) return false;
        el->set_io(
            fd, write,
            [this] {
                unregister();
                wake();
            },
            true);
        registered = true;
        return true;
    }
    void await_resume() const { throw_if_cancelled(); }
    void cancel() noexcept override {
        unregister();
        wake_cancelled();
    }
    void unregister() noexcept {
        if (registered) {
            registered = false;
            el->clear_io(fd, write);
        }
    }
};
} // namespace detail

inline void timer_handle::cancel() noexcept {
    if (!n_ || n_->cancelled) return;
    n_->cancelled = true;
    if (n_->queued()) {
        n_->loop->remove_timer(n_);
        n_->fn.reset();
        --n_->refs; // the heap's reference; the handle's keeps the node alive
    }
}

inline event_loop::event_loop() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) detail::throw_errno("offload: epoll_create1");
    wakefd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wakefd_ < 0) {
        int e = errno;
        ::close(epfd_);
        errno = e;
        detail::throw_errno("offload: eventfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wakefd_;
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev);
    sigemptyset(&sigmask_);
    if (const char* d = std::getenv("OFFLOAD_DEBUG"); d && *d && std::strcmp(d, "0") != 0) debug_ = true;
}

inline event_loop::~event_loop() {
    // Tear down tasks that never finished while everything they may touch
    // (timers, fd table) is still alive; then let finished ones report.
    // Destroying one frame may drop the last reference to another task, so
    // hold a reference to each victim while we go.
    std::vector<detail::task_record*> pending;
    tasks_.for_each([&](detail::task_record* t) {
        if (!t->done) {
            t->retain();
            pending.push_back(t);
        }
    });
    for (auto* t : pending) t->abandon();
    release_retired();
    while (auto* o = observers_.pop_front()) o->loop_closing();
    for (auto* t : pending) t->release();
    tasks_.for_each([](detail::task_record* t) { t->detach(); });
    // The default pool joins its workers; abandoned calls finish without
    // posting back. Then nothing can reach the remote queue any more.
    default_pool_.reset();
    while (posting_.load(std::memory_order_acquire) != 0) detail::cpu_relax();
    while (!ready_.empty()) ready_.pop_front(); // drop queued callbacks (and resumptions of dead frames)
    while (!timers_.empty()) timers_.pop()->discard();
    for (detail::remote_node* n = ts_head_.exchange(nullptr); n;) std::exchange(n, n->next)->discard();
    for (auto& [sig, fn] : signals_) {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    }
    if (sigfd_ >= 0) ::close(sigfd_);
    ::close(wakefd_);
    ::close(epfd_);
}

inline event_loop& event_loop::current() {
    if (auto* l = current_or_null()) return *l;
    throw std::logic_error("offload: no event loop is running on this thread; run your coroutine with "
                           "offload::run(...) or event_loop::run_until_complete(...)");
}

inline void event_loop::enter() {
    if (detail::tls.loop)
        throw std::logic_error("offload: an event loop is already running on this thread; a loop cannot be "
                               "run from inside a running loop (co_await the task instead of running it)");
    owner_ = std::this_thread::get_id();
    detail::tls.loop = this;
    running_ = true;
    stopping_ = false;
    update_watch();
}

inline void event_loop::leave() noexcept {
    detail::tls.loop = nullptr;
    detail::tls.ctx = nullptr;
    running_ = false;
    stopping_ = false;
    watch_.reset();
}

inline void event_loop::run_forever() {
    enter();
    struct guard {
        event_loop* l;
        ~guard() { l->leave(); }
    } g{this};
    while (!stopping_) run_once();
}

template <class F>
timer_handle event_loop::call_at(time_point when, F&& fn) {
    check_thread("event_loop::call_at");
    auto* n = new detail::callback_timer;
    n->loop = this;
    n->deadline = when;
    n->fn = detail::small_function(std::forward<F>(fn));
    timers_.push(n);
    timer_handle h(n);
    return h;
}

namespace detail {
struct fn_remote_node final : remote_node {
    small_function fn;
    explicit fn_remote_node(small_function f) noexcept : fn(std::move(f)) {}
    void run_on_loop() override {
        std::unique_ptr<fn_remote_node> self(this);
        fn();
    }
    void discard() noexcept override { delete this; }
};
} // namespace detail

template <class F>
void event_loop::call_soon_threadsafe(F&& fn) {
    post_remote(new detail::fn_remote_node(detail::small_function(std::forward<F>(fn))));
}

inline void event_loop::post_remote(detail::remote_node* n) noexcept {
    // Once the node is visible the loop may run it, finish and be destroyed
    // while we still read sleeping_ and write the eventfd: the destructor
    // waits until no producer is between these two counter updates.
    posting_.fetch_add(1, std::memory_order_seq_cst);
    detail::remote_node* head = ts_head_.load(std::memory_order_relaxed);
    do {
        n->next = head;
    } while (!ts_head_.compare_exchange_weak(head, n, std::memory_order_seq_cst, std::memory_order_relaxed));
    // Dekker pairing with poll(): the loop publishes sleeping_=true and then
    // re-reads ts_head_; we publish the node and then read sleeping_. With
    // seq_cst on both sides at least one of us sees the other, so either the
    // loop finds the node before sleeping or we wake it. The exchange makes
    // only one producer pay for the write.
    if (sleeping_.load(std::memory_order_seq_cst) && sleeping_.exchange(false, std::memory_order_seq_cst)) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(wakefd_, &one, sizeof one);
    }
    posting_.fetch_sub(1, std::memory_order_release);
}

inline void event_loop::set_exception_handler(exception_handler fn) { exception_handler_ = std::move(fn); }

inline void event_loop::call_exception_handler(const exception_context& c) noexcept {
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
    } catch (...) {
    }
    std::string line = fmt::format("offload: {}{}: {}", c.message,
                                   c.task_name.empty() ? std::string() : fmt::format(" (task '{}')", c.task_name), what);
    std::fprintf(stderr, "%s\n", line.c_str());
}

inline void event_loop::run_once() {
    // While work is ready, skip the (non-blocking) epoll call for a few
    // iterations: it costs a syscall (~0.1 µs) per iteration, the dominant
    // cost of a task that yields or a callback chain. I/O waits at most
    // poll_every iterations.
    constexpr unsigned poll_every = 32;
    if (ready_.empty() || stopping_ || ++skipped_polls_ >= poll_every) {
        skipped_polls_ = 0;
        poll(ready_.empty() && !stopping_);
    }
    run_timers();
    drain_threadsafe();
    // Run what is ready now; what those steps schedule waits for the next
    // iteration, so a task that keeps rescheduling itself cannot starve I/O.
    for (std::size_t n = ready_.size(); n > 0 && !ready_.empty(); --n) {
        detail::small_function fn = std::move(ready_.front());
        ready_.pop_front();
        run_step(fn);
    }
}

inline void event_loop::run_step(detail::small_function& fn) {
    detail::tls.ctx = nullptr;
    if (!debug_) {
        try {
            fn();
        } catch (...) {
            call_exception_handler({"exception in callback", std::current_exception(), {}});
        }
    } else {
        // No clock here: the stall watchdog flags a long step (see stall_watch.hpp).
        std::uint64_t id = watch_ ? watch_->step_begin() : 0;
        try {
            fn();
        } catch (...) {
            call_exception_handler({"exception in callback", std::current_exception(), {}});
        }
        if (watch_) {
            auto took = watch_->step_end(id);
            if (took >= slow_threshold_) report_slow(took);
        }
    }
    detail::tls.ctx = nullptr;
    if (!retired_.empty()) release_retired();
}

// Starts or stops the stall watchdog to match debug mode while the loop runs.
inline void event_loop::update_watch() {
    if (debug_ && running_ && !watch_)
        watch_ = std::make_unique<detail::stall_watch>(slow_threshold_);
    else if ((!debug_ || !running_) && watch_)
        watch_.reset();
}

inline void event_loop::report_slow(std::chrono::nanoseconds took) {
    slow_callback_report r;
    r.duration = took;
    if (auto* c = detail::tls.ctx) {
        r.task_name = c->name.empty() ? std::string("<unnamed task>") : c->name;
        r.resumed_at = detail::tls.resumed_at;
        r.suspended_at = c->suspended_at;
    } else {
        r.task_name = "<callback>";
    }
    try {
        slow_handler_(r);
    } catch (...) {
        call_exception_handler({"exception in slow-callback handler", std::current_exception(), {}});
    }
}

inline void event_loop::poll(bool may_block) {
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
        observers_.for_each([&io_soon](detail::loop_observer* o) { io_soon = io_soon || o->expects_io(); });
    epoll_event evs[64];
    int n = -1;
    if (timeout_ns != 0 && (remote_pending_ > 0 || io_soon) && spin_budget_.count() > 0) {
        // Completions are due from other threads or processes: spin a little
        // before paying for a sleep and a wake-up (about 20-50 µs across cores).
        // Expected fd events are polled with a zero-timeout epoll_wait; then
        // the spin also yields, in case what we wait for runs on this core.
        auto until = clock::now() + spin_budget_;
        for (unsigned i = 1;; ++i) {
            if (ts_head_.load(std::memory_order_acquire) != nullptr) {
                timeout_ns = 0;
                break;
            }
            if (io_soon && (i & 7) == 0) {
                n = ::epoll_wait(epfd_, evs, 64, 0);
                if (n > 0) break;
                ::sched_yield();
            }
            detail::cpu_relax();
            if ((i & 63) == 0 && clock::now() >= until) break;
        }
    }
    if (n <= 0 && timeout_ns != 0) {
        sleeping_.store(true, std::memory_order_seq_cst);
        if (ts_head_.load(std::memory_order_seq_cst) != nullptr) timeout_ns = 0; // see call_soon_threadsafe
    }
    if (watch_ && n <= 0 && timeout_ns != 0) watch_->set_idle(true);
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
    sleeping_.store(false, std::memory_order_relaxed);
    if (watch_) watch_->set_idle(false);
    if (n < 0) detail::throw_errno("offload: epoll_wait");
    for (int i = 0; i < n; ++i) {
        int fd = evs[i].data.fd;
        if (fd == wakefd_) {
            std::uint64_t v;
            [[maybe_unused]] auto r = ::read(wakefd_, &v, sizeof v);
        } else if (fd == sigfd_) {
            read_signals();
        } else {
            dispatch_io(fd, evs[i].events);
        }
    }
}

inline void event_loop::run_timers() {
    if (timers_.empty()) return;
    auto now = clock::now();
    // Only timers due now: one that re-arms itself for "now" runs next iteration.
    std::size_t budget = timers_.size();
    while (budget-- > 0 && !timers_.empty() && timers_.top()->deadline <= now) {
        detail::timer_node* t = timers_.pop();
        detail::small_function step([t] { t->fire(); });
        run_step(step);
    }
}

inline void event_loop::drain_threadsafe() {
    if (ts_head_.load(std::memory_order_relaxed) == nullptr) return;
    detail::remote_node* n = ts_head_.exchange(nullptr, std::memory_order_acquire);
    detail::remote_node* fifo = nullptr; // the stack is LIFO; reverse it
    while (n) {
        detail::remote_node* next = n->next;
        n->next = fifo;
        fifo = n;
        n = next;
    }
    // A step that runs the node, or discards it if the loop dies first.
    struct remote_step {
        detail::remote_node* n;
        explicit remote_step(detail::remote_node* node) noexcept : n(node) {}
        remote_step(remote_step&& o) noexcept : n(std::exchange(o.n, nullptr)) {}
        ~remote_step() {
            if (n) n->discard();
        }
        void operator()() { std::exchange(n, nullptr)->run_on_loop(); }
    };
    while (fifo) ready_.emplace_back(remote_step(std::exchange(fifo, fifo->next)));
}

inline void event_loop::update_epoll(int fd, fd_entry& e) {
    // A callback running in dispatch_io is out of its slot but still registered.
    std::uint32_t want = (e.cb[0] || e.running[0] ? EPOLLIN : 0u) | (e.cb[1] || e.running[1] ? EPOLLOUT : 0u);
    if (want == e.events) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = fd;
    int op = e.events == 0 ? EPOLL_CTL_ADD : (want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
    if (::epoll_ctl(epfd_, op, fd, &ev) < 0) {
        if (op == EPOLL_CTL_DEL) { // the fd may already be closed; epoll forgot it then
            e.events = 0;
            return;
        }
        int err = errno;
        throw std::system_error(err, std::generic_category(),
                                fmt::format("offload: cannot watch fd {} with epoll (regular files and closed fds "
                                            "cannot be watched; use to_thread for file I/O)",
                                            fd));
    }
    e.events = want;
}

inline void event_loop::set_io(int fd, bool write, detail::small_function fn, bool exclusive) {
    check_thread(write ? "event_loop::add_writer" : "event_loop::add_reader");
    if (fd < 0) throw std::invalid_argument(fmt::format("offload: invalid fd {} passed to the event loop", fd));
    if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(static_cast<std::size_t>(fd) + 1);
    fd_entry& e = fds_[static_cast<std::size_t>(fd)];
    if (exclusive && e.cb[write])
        throw std::logic_error(fmt::format("offload: fd {} already has a {}; only one task can wait for the same "
                                           "fd direction at a time",
                                           fd, write ? "writer" : "reader"));
    detail::small_function old = std::move(e.cb[write]);
    const bool was_running = std::exchange(e.running[write], false);
    e.cb[write] = std::move(fn);
    ++e.gen[write];
    try {
        update_epoll(fd, e);
    } catch (...) {
        e.cb[write] = std::move(old);
        e.running[write] = was_running;
        throw;
    }
}

inline bool event_loop::clear_io(int fd, bool write) noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return false;
    fd_entry& e = fds_[static_cast<std::size_t>(fd)];
    // A callback that removes itself while it runs was registered, too.
    bool had = static_cast<bool>(e.cb[write]) || std::exchange(e.running[write], false);
    ++e.gen[write];
    detail::small_function old = std::move(e.cb[write]);
    try {
        update_epoll(fd, e);
    } catch (...) {
        e.events = 0;
    }
    return had;
}

inline void event_loop::dispatch_io(int fd, std::uint32_t ev) {
    const bool dir_ready[2] = {(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0, (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0};
    for (int w = 0; w < 2; ++w) {
        if (!dir_ready[w] || static_cast<std::size_t>(fd) >= fds_.size()) continue;
        fd_entry& e = fds_[static_cast<std::size_t>(fd)];
        if (!e.cb[w]) continue;
        // Run the callback from a local: it may remove or replace itself (or
        // grow fds_). Put it back only if nobody touched that slot meanwhile.
        unsigned gen = e.gen[w];
        detail::small_function fn = std::move(e.cb[w]);
        e.running[w] = true; // still registered: update_epoll keeps watching it
        run_step(fn);
        fd_entry& again = fds_[static_cast<std::size_t>(fd)];
        again.running[w] = false;
        if (again.gen[w] == gen && !again.cb[w]) again.cb[w] = std::move(fn);
    }
}

inline auto event_loop::readable(int fd, std::source_location loc) { return detail::fd_awaiter(this, fd, false, loc); }
inline auto event_loop::writable(int fd, std::source_location loc) { return detail::fd_awaiter(this, fd, true, loc); }

inline void event_loop::add_signal(int sig, std::function<void()> fn) {
    check_thread("event_loop::add_signal_handler");
    if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP)
        throw std::invalid_argument(fmt::format("offload: signal {} cannot be handled (SIGKILL and SIGSTOP never can)", sig));
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    if (!signals_.count(sig)) ::pthread_sigmask(SIG_BLOCK, &one, nullptr);
    sigaddset(&sigmask_, sig);
    int fd = ::signalfd(sigfd_, &sigmask_, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) detail::throw_errno("offload: signalfd");
    if (sigfd_ < 0) {
        sigfd_ = fd;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = sigfd_;
        ::epoll_ctl(epfd_, EPOLL_CTL_ADD, sigfd_, &ev);
    }
    signals_[sig] = std::move(fn);
}

inline bool event_loop::remove_signal_handler(int sig) {
    check_thread("event_loop::remove_signal_handler");
    auto it = signals_.find(sig);
    if (it == signals_.end()) return false;
    signals_.erase(it);
    sigdelset(&sigmask_, sig);
    if (sigfd_ >= 0) ::signalfd(sigfd_, &sigmask_, SFD_NONBLOCK | SFD_CLOEXEC);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    return true;
}

inline void event_loop::read_signals() {
    signalfd_siginfo si;
    while (::read(sigfd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        int sig = static_cast<int>(si.ssi_signo);
        if (!signals_.count(sig)) continue;
        // Copy: the handler may remove itself.
        detail::small_function step([this, sig] {
            auto it = signals_.find(sig);
            if (it != signals_.end()) {
                auto fn = it->second;
                fn();
            }
        });
        run_step(step);
    }
}

} // namespace offload
