// offload/detail/loop/stall_watch.hpp — the debug-mode slow-step detector.
// Reading a clock around every step costs more than a trivial step itself, so
// (like seastar's stall detector) a watchdog thread samples a step counter
// instead: the loop only bumps the counter as a step starts and loads one
// flag as it ends (both in the loop's own step_clock, no pointer to follow).
// When the watchdog sees the same step running for longer than the
// threshold, it flags that step with a lower bound of its start time; the
// loop then times it on completion and reports it. A reported duration is
// never below the real one and at most one sampling period (threshold / 8)
// above it.
// While the step still runs, the watchdog also reports it (1x, 2x, 4x... the
// threshold) with the loop thread's backtrace: it interrupts the loop thread
// with a real-time signal whose handler copies the stack into a static slot
// (async-signal-safe), and symbolizes it on its own thread.
#pragma once

#include <offload/detail/base/backtrace.hpp>
#include <offload/detail/base/config.hpp>
#include <offload/slow_callback.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <source_location>
#include <string>
#include <thread>

#if OFFLOAD_DEFINE_BODIES
#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#endif

namespace offload::detail {

/// What the loop and its watchdog share; it lives in the loop itself, so a
/// debug step costs one counter store and one load of the flag beside it (no
/// pointer to follow, no clock, no threshold compare unless flagged).
struct step_clock {
    using clock = std::chrono::steady_clock;

    // Loop thread: a step starts; returns its number.
    std::uint64_t begin() noexcept {
        std::uint64_t id = steps.load(std::memory_order_relaxed) + 1;
        steps.store(id, std::memory_order_relaxed); // only the loop writes it
        return id;
    }
    // Loop thread: whether the watchdog flagged step `id` as long.
    bool flagged(std::uint64_t id) const noexcept { return suspect.load(std::memory_order_relaxed) == id; }
    // Loop thread, once flagged(id): how long step `id` took (an upper bound).
    clock::duration took() const noexcept {
        std::atomic_thread_fence(std::memory_order_acquire); // pairs with the release store of `suspect`
        auto start = clock::time_point(clock::duration(since.load(std::memory_order_relaxed)));
        return clock::now() - start;
    }
    // Loop thread: around the epoll wait (sleeping is not a step).
    void set_idle(bool on) noexcept { idle.store(on, std::memory_order_relaxed); }

    std::atomic<std::uint64_t> steps{0};   // written by the loop, sampled by the watchdog
    std::atomic<std::uint64_t> suspect{0}; // written by the watchdog (rarely): the step it flagged
    std::atomic<clock::rep> since{0};      // published by `suspect`: a lower bound of its start
    std::atomic<bool> idle{false};
    std::atomic<int> loop_tid{0};          // the thread running the loop (for the stall signal)
};

/// What the stall signal's handler fills in on the loop thread: one static
/// slot per watchdog (static, so a late signal never writes freed memory).
struct stall_capture {
    enum : int { free_slot, owned, requested, capturing, done };
    std::atomic<int> state{free_slot};
    std::atomic<int> tid{0};                              // the thread asked to capture
    const step_clock* clock = nullptr;                    // set with `requested`
    void (*describe)(stall_capture&) noexcept = nullptr;  // the loop's: copies the current task's name
    // Written by the handler, published by `done`:
    std::uint64_t step = 0;
    raw_backtrace bt;
    int skip = 0; // frames of the handler itself
    char task[128] = {};
    std::size_t task_len = 0;
    std::source_location resumed_at{};
};

inline constexpr int stall_capture_slots = 16;
inline stall_capture stall_captures[stall_capture_slots];

/// Serializes and rate-limits slow-step reports from the loop thread (end of
/// step) and the watchdog thread (ongoing), and holds the user's handler.
class stall_reporter {
public:
    void set_handler(slow_callback_handler fn);
    void set_options(const stall_report_options& o);
    stall_report_options options() const;
    /// Delivers `r` unless the rate limit drops it (or, ongoing, the step `step`
    /// has ended). Exceptions from the handler propagate.
    void deliver(slow_callback_report& r, std::uint64_t step);

private:
    mutable std::mutex config_mu_;
    slow_callback_handler handler_ = &default_slow_callback_handler;
    stall_report_options options_;
    std::mutex deliver_mu_; // one report at a time; the handler runs under it
    std::uint64_t ended_step_ = 0;
    std::chrono::steady_clock::time_point window_start_{};
    std::size_t in_window_ = 0;
    std::uint64_t suppressed_ = 0;
};

/// The watchdog thread over a loop's step_clock (debug mode, while the loop runs).
class stall_watch {
public:
    using clock = step_clock::clock;

    stall_watch(step_clock& steps, clock::duration threshold, stall_reporter& reporter,
                void (*describe)(stall_capture&) noexcept);
    stall_watch(const stall_watch&) = delete;
    stall_watch& operator=(const stall_watch&) = delete;
    ~stall_watch();

private:
    void run();
    void report_ongoing(std::uint64_t step, clock::duration elapsed);
    bool capture(std::uint64_t step, const stall_report_options& o, stall_capture*& slot);

    step_clock& steps_;
    const clock::duration threshold_;
    stall_reporter& reporter_;
    void (*describe_)(stall_capture&) noexcept;
    const clock::time_point created_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void stall_reporter::set_handler(slow_callback_handler fn) {
    std::lock_guard lk(config_mu_);
    handler_ = fn ? std::move(fn) : slow_callback_handler(&default_slow_callback_handler);
}

OFFLOAD_DECL void stall_reporter::set_options(const stall_report_options& o) {
    if (o.window <= std::chrono::nanoseconds::zero())
        throw std::invalid_argument("offload: stall_report_options::window must be positive (default: one minute)");
    if (o.signal != 0 && (o.signal < SIGRTMIN || o.signal > SIGRTMAX))
        throw std::invalid_argument("offload: stall_report_options::signal must be 0 (SIGRTMIN + 6) or a real-time "
                                    "signal between SIGRTMIN and SIGRTMAX");
    std::lock_guard lk(config_mu_);
    options_ = o;
}

OFFLOAD_DECL stall_report_options stall_reporter::options() const {
    std::lock_guard lk(config_mu_);
    return options_;
}

OFFLOAD_DECL void stall_reporter::deliver(slow_callback_report& r, std::uint64_t step) {
    std::lock_guard lk(deliver_mu_);
    if (r.ongoing && ended_step_ == step) return; // the stall is over: its end report said so
    if (!r.ongoing) ended_step_ = step;
    slow_callback_handler fn;
    stall_report_options o;
    {
        std::lock_guard c(config_mu_);
        fn = handler_;
        o = options_;
    }
    if (o.max_reports != 0) {
        const auto now = std::chrono::steady_clock::now();
        if (in_window_ == 0 || now - window_start_ >= o.window) {
            window_start_ = now;
            in_window_ = 0;
        }
        if (in_window_ >= o.max_reports) {
            ++suppressed_;
            return;
        }
        ++in_window_;
    }
    r.suppressed = suppressed_;
    suppressed_ = 0;
    fn(r);
}

namespace stall_signal {
// The handler: on the loop thread, fill the slot requested for this thread.
inline void on_signal(int, siginfo_t*, void* uctx) noexcept {
    const int saved = errno;
    const int me = static_cast<int>(::syscall(SYS_gettid));
    for (auto& s : stall_captures) {
        int expected = stall_capture::requested;
        if (s.state.load(std::memory_order_acquire) != stall_capture::requested ||
            s.tid.load(std::memory_order_relaxed) != me ||
            !s.state.compare_exchange_strong(expected, stall_capture::capturing, std::memory_order_acquire))
            continue;
        capture_backtrace(s.bt);
        // Skip the handler's own frames: start at the interrupted instruction.
        s.skip = 0;
#if defined(__x86_64__)
        void* pc = reinterpret_cast<void*>(static_cast<ucontext_t*>(uctx)->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
        void* pc = reinterpret_cast<void*>(static_cast<ucontext_t*>(uctx)->uc_mcontext.pc);
#else
        void* pc = nullptr;
#endif
        for (int i = 0; i < s.bt.size; ++i)
            if (s.bt.frames[i] == pc) {
                s.skip = i;
                break;
            }
        s.step = s.clock->steps.load(std::memory_order_relaxed);
        s.task_len = 0;
        if (s.describe) s.describe(s);
        s.state.store(stall_capture::done, std::memory_order_release);
    }
    errno = saved;
}

// Installs the handler for `sig` once; an empty string, or why not.
inline std::string install(int sig) {
    static std::mutex mu;
    std::lock_guard lk(mu);
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0) return "sigaction failed: " + std::string(std::strerror(errno));
    if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == &on_signal) return {};
    if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL)
        return "signal " + std::to_string(sig) +
               " already has a handler of the program's; offload left it alone. Choose another real-time signal "
               "with stall_report_options::signal";
    if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction != nullptr)
        return "signal " + std::to_string(sig) +
               " already has a handler of the program's; offload left it alone. Choose another real-time signal "
               "with stall_report_options::signal";
    warm_backtrace(); // its first call may allocate: never let that be in the handler
    struct sigaction sa {};
    sa.sa_sigaction = &on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(sig, &sa, nullptr) != 0) return "sigaction failed: " + std::string(std::strerror(errno));
    return {};
}
} // namespace stall_signal

OFFLOAD_DECL stall_watch::stall_watch(step_clock& steps, clock::duration threshold, stall_reporter& reporter,
                                      void (*describe)(stall_capture&) noexcept)
    : steps_(steps), threshold_(threshold), reporter_(reporter), describe_(describe), created_(clock::now()) {
    thread_ = std::thread([this] { run(); });
}

OFFLOAD_DECL stall_watch::~stall_watch() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
}

// Asks the loop thread for its stack; true with `slot` filled in (state done)
// if it answered for step `step` in time. The slot stays owned by the caller.
OFFLOAD_DECL bool stall_watch::capture(std::uint64_t step, const stall_report_options& o, stall_capture*& slot) {
    const int tid = steps_.loop_tid.load(std::memory_order_relaxed);
    if (tid == 0) return false;
    slot = nullptr;
    for (auto& c : stall_captures) {
        int expected = stall_capture::free_slot;
        if (c.state.compare_exchange_strong(expected, stall_capture::owned, std::memory_order_acquire)) {
            slot = &c;
            break;
        }
    }
    if (!slot) return false; // more watchdogs asking at once than slots: no backtrace this time
    slot->tid.store(tid, std::memory_order_relaxed);
    slot->clock = &steps_;
    slot->describe = describe_;
    slot->state.store(stall_capture::requested, std::memory_order_release);
    const int sig = o.signal ? o.signal : SIGRTMIN + 6;
    if (::syscall(SYS_tgkill, ::getpid(), tid, sig) != 0) {
        slot->state.store(stall_capture::owned, std::memory_order_relaxed);
        return false;
    }
    // The handler runs within microseconds, unless the loop thread has the
    // signal blocked (or a sanitizer defers it): wait a bounded time.
    const auto give_up = clock::now() + std::clamp<clock::duration>(threshold_, std::chrono::milliseconds(10),
                                                                    std::chrono::milliseconds(200));
    for (;;) {
        if (slot->state.load(std::memory_order_acquire) == stall_capture::done) break;
        if (clock::now() >= give_up) {
            int expected = stall_capture::requested;
            if (slot->state.compare_exchange_strong(expected, stall_capture::owned, std::memory_order_acquire))
                return false; // withdrawn: a late signal finds nothing to fill
            while (slot->state.load(std::memory_order_acquire) != stall_capture::done) std::this_thread::yield();
            break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return slot->step == step;
}

// On the watchdog thread: step `step` has run for `elapsed` and still runs.
OFFLOAD_DECL void stall_watch::report_ongoing(std::uint64_t step, clock::duration elapsed) {
    const stall_report_options o = reporter_.options();
    if (!o.while_running) return;
    slow_callback_report r;
    r.ongoing = true;
    r.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed);
    r.task_name = "<unknown>";
    if (o.backtrace) {
        const int sig = o.signal ? o.signal : SIGRTMIN + 6;
        std::string why = stall_signal::install(sig);
        stall_capture* slot = nullptr;
        if (!why.empty()) {
            r.backtrace.push_back("<no backtrace: " + why + ">");
        } else if (capture(step, o, slot)) {
            r.task_name.assign(slot->task, slot->task_len);
            r.resumed_at = slot->resumed_at;
            r.backtrace = symbolize(slot->bt, slot->skip);
            if (slot->skip == 0) {
                // The interrupted pc was not among the frames (TSan runs a
                // handler later, from its interceptor): drop the handler's own.
                for (std::size_t i = 0; i < r.backtrace.size(); ++i)
                    if (r.backtrace[i].find("stall_signal::on_signal") != std::string::npos) {
                        r.backtrace.erase(r.backtrace.begin(),
                                          r.backtrace.begin() + static_cast<std::ptrdiff_t>(i + 1));
                        break;
                    }
            }
        } else if (slot && slot->state.load(std::memory_order_relaxed) == stall_capture::done && slot->step != step) {
            slot->state.store(stall_capture::free_slot, std::memory_order_release);
            return; // the stall ended while we asked
        } else {
            r.backtrace.push_back("<no backtrace: the loop thread did not answer the stall signal in time>");
        }
        if (slot) slot->state.store(stall_capture::free_slot, std::memory_order_release);
    }
    try {
        reporter_.deliver(r, step);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "offload: exception in slow-callback handler (ongoing report, watchdog thread): %s\n",
                     e.what());
    } catch (...) {
        std::fprintf(stderr, "offload: exception in slow-callback handler (ongoing report, watchdog thread)\n");
    }
}

OFFLOAD_DECL void stall_watch::run() {
    const auto period = std::max<clock::duration>(std::chrono::milliseconds(1), threshold_ / 8);
    // Steps may begin before this thread runs: bound them by our creation.
    std::uint64_t seen = 0;
    std::uint64_t next_multiple = 1; // the next ongoing report of step `seen`, in thresholds
    auto prev_sample = created_;
    auto start_bound = created_; // the step `seen` started no earlier than this
    std::unique_lock lk(mu_);
    while (!cv_.wait_for(lk, period, [this] { return stop_; })) {
        auto now = clock::now();
        std::uint64_t s = steps_.steps.load(std::memory_order_relaxed);
        if (s != seen || steps_.idle.load(std::memory_order_relaxed)) {
            seen = s;
            next_multiple = 1;
            start_bound = prev_sample; // a new step began after the previous sample
        } else if (now - start_bound >= threshold_) {
            if (steps_.suspect.load(std::memory_order_relaxed) != s) {
                steps_.since.store(start_bound.time_since_epoch().count(), std::memory_order_relaxed);
                steps_.suspect.store(s, std::memory_order_release); // publishes `since`
            }
            if (now - start_bound >= threshold_ * static_cast<clock::rep>(next_multiple)) {
                // 1x, 2x, 4x...: the next one at twice the time this one is due.
                while (now - start_bound >= threshold_ * static_cast<clock::rep>(next_multiple)) next_multiple *= 2;
                lk.unlock();
                report_ongoing(s, now - start_bound);
                lk.lock();
                now = clock::now(); // the report took time: keep sampling from here
            }
        }
        prev_sample = now;
    }
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
