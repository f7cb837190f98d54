// offload/detail/loop/stall_watch.hpp — the debug-mode slow-step detector's clock.
// Reading a clock around every step costs more than a trivial step itself, so
// (like seastar's stall detector) a watchdog thread samples a step counter
// instead: the loop only bumps the counter as a step starts and checks one
// flag as it ends. When the watchdog sees the same step running for longer
// than the threshold, it flags that step with a lower bound of its start
// time; the loop then times it on completion and reports it. A reported
// duration is never below the real one and at most one sampling period
// (threshold / 8) above it.
#pragma once

#include <offload/detail/base/config.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace offload::detail {

class stall_watch {
public:
    using clock = std::chrono::steady_clock;

    explicit stall_watch(clock::duration threshold);
    stall_watch(const stall_watch&) = delete;
    stall_watch& operator=(const stall_watch&) = delete;
    ~stall_watch();

    // Loop thread: a step starts; returns its number.
    std::uint64_t step_begin() noexcept {
        std::uint64_t id = steps_.load(std::memory_order_relaxed) + 1;
        steps_.store(id, std::memory_order_relaxed); // only the loop writes it
        return id;
    }
    // Loop thread: if step `id` was flagged, how long it took (else zero).
    clock::duration step_end(std::uint64_t id) noexcept {
        if (suspect_.load(std::memory_order_acquire) != id) return clock::duration::zero();
        auto since = clock::time_point(clock::duration(since_.load(std::memory_order_relaxed)));
        return clock::now() - since;
    }
    // Loop thread: around the epoll wait (sleeping is not a step).
    void set_idle(bool idle) noexcept { idle_.store(idle, std::memory_order_relaxed); }

private:
    void run();

    const clock::duration threshold_;
    const clock::time_point created_;
    alignas(64) std::atomic<std::uint64_t> steps_{0};
    std::atomic<bool> idle_{false};
    alignas(64) std::atomic<std::uint64_t> suspect_{0};
    std::atomic<clock::rep> since_{0};
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL stall_watch::stall_watch(clock::duration threshold) : threshold_(threshold), created_(clock::now()) {
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
        std::uint64_t s = steps_.load(std::memory_order_relaxed);
        if (s != seen || idle_.load(std::memory_order_relaxed)) {
            seen = s;
            start_bound = prev_sample; // a new step began after the previous sample
        } else if (now - start_bound >= threshold_ && suspect_.load(std::memory_order_relaxed) != s) {
            since_.store(start_bound.time_since_epoch().count(), std::memory_order_relaxed);
            suspect_.store(s, std::memory_order_release); // publishes since_
        }
        prev_sample = now;
    }
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
