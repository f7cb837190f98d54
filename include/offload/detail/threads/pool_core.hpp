// offload/detail/threads/pool_core.hpp — the machinery of a thread_pool: the
// worker threads, the queue that carries calls to them, bounded-queue
// admission, and shutdown. <offload/thread_pool.hpp> is its public face.
//
// The hand-off is where the speed is: a lock-free MPMC ring carries calls to
// the workers, finished calls travel back through the loop's lock-free remote
// queue, and both sides spin briefly before they sleep (workers on a futex,
// the loop in epoll), so a quick call needs no syscall while both are awake.
// Idle workers stop spinning after ~50 µs and cost nothing.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/config.hpp>
#include <offload/detail/base/cpu.hpp>
#include <offload/detail/base/futex.hpp>
#include <offload/detail/base/mpmc_ring.hpp>
#include <offload/detail/base/spin.hpp>
#include <offload/detail/threads/call.hpp>
#include <offload/errors.hpp>
#include <offload/executor.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <deque>
#include <mutex>
#include <pthread.h>
#include <stdexcept>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace offload::detail {

class thread_pool_core final : private slot_source {
public:
    /// `workers` threads named "<name>-<i>"; `queue_capacity` calls may wait
    /// (0 = unbounded; a full queue makes submitters wait for a slot).
    /// `nice`: each worker raises its niceness by this much (0 to 19) as it starts.
    thread_pool_core(std::size_t workers, std::size_t queue_capacity, std::string name, int nice = 0);
    thread_pool_core(const thread_pool_core&) = delete;
    thread_pool_core& operator=(const thread_pool_core&) = delete;
    ~thread_pool_core() { shutdown(true, false); }

    void shutdown(bool wait, bool cancel_pending);
    executor_stats stats() const noexcept { return counters_.snapshot(threads_.size()); }
    std::size_t workers() const noexcept { return threads_.size(); }
    const std::string& name() const noexcept { return name_; }

    // --- what the call awaiter uses (loop thread) ---------------------------------
    /// Throws executor_closed once the pool is shut down.
    void check_open() const;
    /// Counts a submission; false when the call must wait for a queue slot
    /// (then the pool holds a reference and posts a slot event to its loop).
    bool admit(thread_call* c);
    /// Withdraws a call still waiting for a slot; false if the grant is on its way.
    bool cancel_waiting(thread_call* c) noexcept;
    /// Withdraws a queued call; false if a worker took it (or shutdown dropped it).
    bool cancel_queued(thread_call* c) noexcept;
    /// Queues an admitted call; false (resolve with executor_closed) if the pool closed since.
    /// `batch`: the call is one of a batch queued at *batch (one clock read for
    /// all); no worker is woken for it: the caller calls wake_for_queued() after the batch.
    bool enqueue(thread_call* c, bool holds_pool_ref, const clock::time_point* batch = nullptr);
    /// Wakes a sleeping worker if calls are queued and nobody spins (after a batch
    /// of enqueue(…, batch); each worker that takes a call wakes the next if more are queued).
    void wake_for_queued() noexcept {
        // Dekker pairing with park(): it announces itself in sleepers_ and then
        // re-checks the queue; we published the calls and then read sleepers_.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_relaxed) > 0 && spinning_.load(std::memory_order_relaxed) == 0 &&
            !queue_empty())
            wake_one();
    }
    /// A call granted a slot will not be queued after all (see slot_source).
    void return_slot(thread_call* c) noexcept override {
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
        release_slot();
        c->unref();
    }

private:
    void worker_main();
    thread_call* pop() noexcept;
    bool queue_empty() const noexcept {
        return ring_.empty_hint() && overflow_size_.load(std::memory_order_acquire) == 0;
    }
    bool run_call(thread_call* c, clock::time_point& last) noexcept;
    void park(bool counted, spinner& spin) noexcept; // `spin`: this worker's memory of its spins
    void wake_one() noexcept {
        wake_seq_.fetch_add(1, std::memory_order_release);
        futex_wake(wake_seq_, 1);
    }
    void release_slot() noexcept;
    void drop_queued_as_closed() noexcept;
    void resolve_closed(thread_call* c) noexcept;

    std::string name_;
    int nice_ = 0;
    std::size_t queue_capacity_;
    std::size_t max_spinners_ = 1;
    std::vector<std::thread> threads_;

    mpmc_ring<thread_call> ring_{4096};
    std::mutex overflow_mu_; // the ring is full: rare, so a plain locked deque
    std::deque<thread_call*> overflow_;
    std::atomic<std::size_t> overflow_size_{0};

    alignas(cache_line) std::atomic<std::uint32_t> wake_seq_{0};
    std::atomic<int> sleepers_{0};
    std::atomic<int> spinning_{0};
    std::atomic<int> submitting_{0};
    std::atomic<bool> closed_{false};
    std::atomic<bool> stopping_{false};

    // Bounded queues only: free queue slots and the calls waiting for one (FIFO).
    std::mutex slot_mu_;
    std::size_t free_slots_ = 0;
    std::deque<thread_call*> slot_waiters_;

    std::mutex join_mu_;
    executor_counters counters_;
};

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL thread_pool_core::thread_pool_core(std::size_t n, std::size_t queue_capacity, std::string name, int nice)
    : name_(name.empty() ? std::string("offload") : std::move(name)), nice_(nice), queue_capacity_(queue_capacity) {
    if (n == 0 || n > 4096)
        throw std::invalid_argument(fmt::format("offload: thread_pool_options.workers = {} is not a sensible pool "
                                                "size; use 0 for available_cpus() or a number up to 4096",
                                                n));
    if (nice < 0 || nice > 19)
        throw std::invalid_argument(fmt::format("offload: thread_pool_options.nice = {} is out of range; use 0 (the "
                                                "loop's priority) to 19 (the lowest): workers can only lower their "
                                                "priority (raising it needs CAP_SYS_NICE)",
                                                nice));
    free_slots_ = queue_capacity_;
    max_spinners_ = std::min<std::size_t>(n, std::max<std::size_t>(2, n / 2));
    // Workers block every signal, so signals reach the loops' signalfds.
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
        threads_.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            threads_.emplace_back([this] { worker_main(); });
            // Named from here, so the names are visible once the constructor returns.
            std::string tname = fmt::format("{}-{}", name_, i);
            if (tname.size() > 15) tname = tname.substr(tname.size() - 15); // keep the index visible
            ::pthread_setname_np(threads_.back().native_handle(), tname.c_str());
        }
    } catch (...) {
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
        shutdown(true, true);
        throw;
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

OFFLOAD_DECL void thread_pool_core::check_open() const {
    if (closed_.load(std::memory_order_acquire))
        throw executor_closed(fmt::format("offload::executor_closed: thread pool '{}' was shut down and takes no new "
                                          "calls; submit before shutdown() or use another executor",
                                          name_));
}

OFFLOAD_DECL bool thread_pool_core::admit(thread_call* c) {
    check_open();
    counters_.submitted.fetch_add(1, std::memory_order_relaxed);
    if (queue_capacity_ == 0) return true;
    std::lock_guard lk(slot_mu_);
    if (free_slots_ > 0 && slot_waiters_.empty()) {
        --free_slots_;
        return true;
    }
    c->state.store(call_state::waiting_slot, std::memory_order_relaxed);
    c->slots = this;
    c->refs.fetch_add(1, std::memory_order_relaxed); // the pool's, while it waits
    slot_waiters_.push_back(c);
    return false;
}

OFFLOAD_DECL bool thread_pool_core::cancel_waiting(thread_call* c) noexcept {
    std::lock_guard lk(slot_mu_);
    auto it = std::find(slot_waiters_.begin(), slot_waiters_.end(), c);
    if (it == slot_waiters_.end()) return false; // granted already: the grant is on its way
    slot_waiters_.erase(it);
    counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
    c->unref();
    return true;
}

OFFLOAD_DECL void thread_pool_core::release_slot() noexcept {
    if (queue_capacity_ == 0) return;
    thread_call* next = nullptr;
    {
        std::lock_guard lk(slot_mu_);
        if (slot_waiters_.empty()) {
            ++free_slots_;
            return;
        }
        next = slot_waiters_.front(); // hand the slot over directly: FIFO, no barging
        slot_waiters_.pop_front();
    }
    next->posted = thread_call::event::slot;
    next->loop->post_remote(next);
}

OFFLOAD_DECL bool thread_pool_core::enqueue(thread_call* c, bool holds_pool_ref, const clock::time_point* batch) {
    // Shutdown waits for in-progress submissions, so none lands after the workers left.
    submitting_.fetch_add(1, std::memory_order_seq_cst);
    if (closed_.load(std::memory_order_seq_cst)) {
        submitting_.fetch_sub(1, std::memory_order_release);
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
        release_slot();
        if (holds_pool_ref) c->unref();
        return false;
    }
    c->state.store(call_state::queued, std::memory_order_relaxed);
    c->enqueued = batch ? *batch : clock::now();
    if (!holds_pool_ref) c->refs.fetch_add(1, std::memory_order_relaxed); // the pool's, until the call is done
    counters_.note_queued();
    if (overflow_size_.load(std::memory_order_relaxed) != 0 || !ring_.try_push(c)) {
        std::lock_guard lk(overflow_mu_);
        overflow_.push_back(c);
        overflow_size_.fetch_add(1, std::memory_order_release);
    }
    submitting_.fetch_sub(1, std::memory_order_release);
    // No wake-up while a worker spins, nor once the queue is empty again: then
    // a spinner already took the call (it often does before we get here).
    if (!batch) wake_for_queued();
    return true;
}

OFFLOAD_DECL bool thread_pool_core::cancel_queued(thread_call* c) noexcept {
    auto expected = call_state::queued;
    if (!c->state.compare_exchange_strong(expected, call_state::dropped, std::memory_order_acq_rel)) return false;
    // The pointer stays in the queue; the worker that pops it drops it.
    counters_.queued.fetch_sub(1, std::memory_order_relaxed);
    counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
    release_slot();
    return true;
}

OFFLOAD_DECL thread_call* thread_pool_core::pop() noexcept {
    if (thread_call* c = ring_.try_pop()) return c;
    if (overflow_size_.load(std::memory_order_acquire) == 0) return nullptr;
    std::lock_guard lk(overflow_mu_);
    if (overflow_.empty()) return nullptr;
    thread_call* c = overflow_.front();
    overflow_.pop_front();
    overflow_size_.fetch_sub(1, std::memory_order_release);
    return c;
}

// Returns true when it counted the worker in spinning_ (see worker_main).
// `last`: when the previous call ended, if this worker went straight on to
// this one (else the epoch): it serves as this call's start, so that a run of
// calls costs one clock read each. Updated to when this call ended.
OFFLOAD_DECL bool thread_pool_core::run_call(thread_call* c, clock::time_point& last) noexcept {
    auto expected = call_state::queued;
    if (!c->state.compare_exchange_strong(expected, call_state::running, std::memory_order_acq_rel)) {
        c->unref(); // cancelled while queued
        return false;
    }
    counters_.busy.fetch_add(1, std::memory_order_relaxed);
    counters_.queued.fetch_sub(1, std::memory_order_relaxed);
    release_slot();
    auto t0 = last == clock::time_point{} ? clock::now() : std::max(last, c->enqueued);
    counters_.queue_wait.record(static_cast<std::uint64_t>((t0 - c->enqueued).count()));
    c->execute();
    last = clock::now();
    counters_.run_time.record(static_cast<std::uint64_t>((last - t0).count()));
    expected = call_state::running;
    bool deliver = c->state.compare_exchange_strong(expected, call_state::finished, std::memory_order_acq_rel);
    if (!deliver)
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed); // the caller gave up while it ran
    else
        (c->failed ? counters_.failed : counters_.completed).fetch_add(1, std::memory_order_relaxed);
    counters_.busy.fetch_sub(1, std::memory_order_relaxed);
    // Count ourselves as looking for work before the result reaches the loop:
    // a call it submits in response then finds a spinner and wakes nobody.
    spinning_.fetch_add(1, std::memory_order_seq_cst);
    if (deliver) {
        c->posted = thread_call::event::finished;
        c->loop->post_remote(c); // the pool's reference travels with it; c is not ours any more
    } else {
        c->unref();
    }
    return true;
}

// `counted`: the caller is already counted in spinning_ (run_call announced it).
OFFLOAD_DECL void thread_pool_core::park(bool counted, spinner& spin) noexcept {
    // Spin first (a few spinners at most): a call submitted within the budget
    // is picked up without any syscall on either side.
    int before = counted ? spinning_.load(std::memory_order_relaxed) - 1
                         : spinning_.fetch_add(1, std::memory_order_acq_rel);
    const bool spun = before < static_cast<int>(max_spinners_);
    if (spun && spin.spin([this] { return !queue_empty() || stopping_.load(std::memory_order_relaxed); })) {
        spinning_.fetch_sub(1, std::memory_order_acq_rel);
        return; // worker_main wakes a sleeper if more than this call is queued
    }
    spinning_.fetch_sub(1, std::memory_order_acq_rel);
    std::uint32_t seq = wake_seq_.load(std::memory_order_acquire);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (queue_empty() && !stopping_.load(std::memory_order_acquire)) futex_wait(wake_seq_, seq);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    if (spun) spin.woke();
}

OFFLOAD_DECL void thread_pool_core::worker_main() {
    // Linux keeps a niceness per thread; a new thread starts with its creator's.
    // Raising one's own niceness needs no privilege, so this cannot fail.
    if (nice_ > 0) {
        errno = 0;
        int cur = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
        if (cur == -1 && errno != 0) cur = 0;
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), std::min(19, cur + nice_));
    }
    bool looking = false; // counted in spinning_ by run_call: about to look for the next call
    clock::time_point last{}; // when the previous call ended, while we go straight on (see run_call)
    spinner spin(steady_spin_policy());
    for (;;) {
        if (thread_call* c = pop()) {
            if (looking) spinning_.fetch_sub(1, std::memory_order_acq_rel);
            // More queued than this call and nobody spinning: wake a sleeper for it
            // (only then: a wake-up per call would cost a syscall each time).
            if (spinning_.load(std::memory_order_relaxed) == 0 && sleepers_.load(std::memory_order_relaxed) > 0 &&
                !queue_empty())
                wake_one();
            looking = run_call(c, last);
            continue;
        }
        if (stopping_.load(std::memory_order_acquire) && queue_empty()) {
            if (looking) spinning_.fetch_sub(1, std::memory_order_acq_rel);
            return;
        }
        park(looking, spin);
        looking = false;
        last = {};
    }
}

OFFLOAD_DECL void thread_pool_core::resolve_closed(thread_call* c) noexcept {
    c->closed = true;
    c->posted = thread_call::event::finished;
    counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
    c->loop->post_remote(c);
}

OFFLOAD_DECL void thread_pool_core::drop_queued_as_closed() noexcept {
    {
        std::deque<thread_call*> waiters;
        {
            std::lock_guard lk(slot_mu_);
            waiters.swap(slot_waiters_);
        }
        for (auto* c : waiters) {
            c->state.store(call_state::dropped, std::memory_order_relaxed);
            resolve_closed(c);
        }
    }
    while (thread_call* c = pop()) {
        auto expected = call_state::queued;
        if (c->state.compare_exchange_strong(expected, call_state::dropped, std::memory_order_acq_rel)) {
            counters_.queued.fetch_sub(1, std::memory_order_relaxed);
            resolve_closed(c);
        } else {
            c->unref(); // the caller had cancelled it
        }
    }
}

OFFLOAD_DECL void thread_pool_core::shutdown(bool wait, bool cancel_pending) {
    closed_.store(true, std::memory_order_seq_cst);
    while (submitting_.load(std::memory_order_seq_cst) != 0) cpu_relax();
    if (cancel_pending) drop_queued_as_closed();
    stopping_.store(true, std::memory_order_seq_cst);
    wake_seq_.fetch_add(1, std::memory_order_release);
    futex_wake(wake_seq_, INT_MAX);
    if (!wait) return;
    std::lock_guard lk(join_mu_);
    for (auto& t : threads_)
        if (t.get_id() == std::this_thread::get_id())
            throw std::logic_error("offload: thread_pool::shutdown(wait=true) called from one of the pool's own "
                                   "workers would wait for itself; call shutdown(false) there");
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    // Calls still waiting for a slot can never be queued now.
    drop_queued_as_closed();
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
