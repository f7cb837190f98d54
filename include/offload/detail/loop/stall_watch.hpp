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
#pragma once

#include <offload/detail/base/config.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

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
};

/// The watchdog thread over a loop's step_clock (debug mode, while the loop runs).
class stall_watch {
public:
    using clock = step_clock::clock;

    stall_watch(step_clock& steps, clock::duration threshold);
    stall_watch(const stall_watch&) = delete;
    stall_watch& operator=(const stall_watch&) = delete;
    ~stall_watch();

private:
    void run();

    step_clock& steps_;
    const clock::duration threshold_;
    const clock::time_point created_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL stall_watch::stall_watch(step_clock& steps, clock::duration threshold)
    : steps_(steps), threshold_(threshold), created_(clock::now()) {
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

OFFLOAD_DECL void stall_watch::run() {
    const auto period = std::max<clock::duration>(std::chrono::milliseconds(1), threshold_ / 8);
    // Steps may begin before this thread runs: bound them by our creation.
    std::uint64_t seen = 0;
    auto prev_sample = created_;
    auto start_bound = created_; // the step `seen` started no earlier than this
    std::unique_lock lk(mu_);
    while (!cv_.wait_for(lk, period, [this] { return stop_; })) {
        auto now = clock::now();
        std::uint64_t s = steps_.steps.load(std::memory_order_relaxed);
        if (s != seen || steps_.idle.load(std::memory_order_relaxed)) {
            seen = s;
            start_bound = prev_sample; // a new step began after the previous sample
        } else if (now - start_bound >= threshold_ && steps_.suspect.load(std::memory_order_relaxed) != s) {
            steps_.since.store(start_bound.time_since_epoch().count(), std::memory_order_relaxed);
            steps_.suspect.store(s, std::memory_order_release); // publishes `since`
        }
        prev_sample = now;
    }
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
