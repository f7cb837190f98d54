// offload/thread_pool.hpp — thread_pool, the executor behind to_thread and
// run_in_executor for blocking or CPU-heavy calls.
//
// The hand-off is where the speed is: a lock-free MPMC ring carries calls to
// the workers, finished calls travel back through the loop's lock-free remote
// queue, and both sides spin briefly before they sleep (workers on a futex,
// the loop in epoll), so a quick call needs no syscall while both are awake.
// Idle workers stop spinning after ~50 µs and cost nothing.
#pragma once

#include <offload/available_cpus.hpp>
#include <offload/detail/futex.hpp>
#include <offload/detail/latency_histogram.hpp>
#include <offload/detail/mpmc_ring.hpp>
#include <offload/detail/pool_job.hpp>
#include <offload/errors.hpp>
#include <offload/event_loop.hpp>
#include <offload/executor.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <csignal>
#include <deque>
#include <mutex>
#include <pthread.h>
#include <string>
#include <thread>
#include <vector>

namespace offload {

struct thread_pool_options {
    /// Worker threads; 0 means available_cpus().
    std::size_t workers = 0;
    /// Calls that may wait in the queue; 0 = unbounded. When full, a submitting
    /// coroutine suspends until a slot frees (backpressure); the loop never blocks.
    std::size_t max_queued = 0;
    /// Thread name prefix (pthread_setname_np; names are cut to 15 characters).
    std::string name = "offload";
};

/// A pool of worker threads that runs offloaded calls.
///
/// Thread safety: submissions may come from any number of loops on any
/// threads; stats() and shutdown() may be called from any thread.
/// Cancellation: a queued call that is cancelled never runs; a running call
/// is asked to stop through its std::stop_token (if it takes one), and its
/// awaiter resumes at once with cancelled_error while the worker stays counted
/// as busy until the call really returns.
/// Example: `thread_pool pool({.workers = 4, .max_queued = 64, .name = "io"});`
class thread_pool final : private detail::slot_source {
public:
    explicit thread_pool(thread_pool_options opts = {});
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;
    /// shutdown(true): runs what is queued, then joins the workers.
    ~thread_pool();

    /// Stops accepting calls (they fail with executor_closed). With
    /// `cancel_pending`, every queued call resolves with executor_closed at once.
    /// With `wait`, returns once the workers have exited (not from a worker of
    /// this pool: std::logic_error). Callable from any thread, more than once.
    void shutdown(bool wait = true, bool cancel_pending = false);

    /// A snapshot of the pool's counters and latency percentiles.
    executor_stats stats() const;

    std::size_t workers() const noexcept { return threads_.size(); }
    const std::string& name() const noexcept { return name_; }

    // internal: used by the call awaiter (detail/pool_call.hpp).
    void check_open() const;
    bool admit(detail::pool_job* j);
    bool cancel_waiting(detail::pool_job* j) noexcept;
    bool cancel_queued(detail::pool_job* j) noexcept;
    bool enqueue(detail::pool_job* j, bool holds_pool_ref);
    void release_slot() noexcept;
    void return_slot(detail::pool_job* j) noexcept override {
        cancelled_.fetch_add(1, std::memory_order_relaxed);
        release_slot();
        j->unref();
    }

private:
    void worker_main();
    detail::pool_job* pop() noexcept;
    bool queue_empty() const noexcept {
        return ring_.empty_hint() && overflow_size_.load(std::memory_order_acquire) == 0;
    }
    bool run_job(detail::pool_job* j) noexcept;
    void park(bool counted) noexcept;
    void wake_one() noexcept {
        wake_seq_.fetch_add(1, std::memory_order_release);
        detail::futex_wake(wake_seq_, 1);
    }
    void drop_queued_as_closed() noexcept;
    void resolve_closed(detail::pool_job* j) noexcept;
    void note_queued() noexcept;

    static constexpr std::chrono::microseconds spin_budget{50};

    std::string name_;
    std::size_t max_queued_;
    std::size_t max_spinners_ = 1;
    std::vector<std::thread> threads_;

    detail::mpmc_ring<detail::pool_job> ring_{4096};
    std::mutex overflow_mu_; // the ring is full: rare, so a plain locked deque
    std::deque<detail::pool_job*> overflow_;
    std::atomic<std::size_t> overflow_size_{0};

    alignas(detail::cache_line) std::atomic<std::uint32_t> wake_seq_{0};
    std::atomic<int> sleepers_{0};
    std::atomic<int> spinning_{0};
    std::atomic<int> submitting_{0};
    std::atomic<bool> closed_{false};
    std::atomic<bool> stopping_{false};

    // Bounded queues only: free slots and the calls waiting for one (FIFO).
    std::mutex slot_mu_;
    std::size_t free_slots_ = 0;
    std::deque<detail::pool_job*> slot_waiters_;

    std::mutex join_mu_;

    // Counters grouped by writer, one cache line each, so that the loop's
    // submissions and the workers' completions do not bounce one line.
    alignas(detail::cache_line) std::atomic<std::uint64_t> submitted_{0}; // submitters
    std::atomic<std::size_t> max_seen_queued_{0};
    alignas(detail::cache_line) std::atomic<std::size_t> queued_{0}; // both sides
    alignas(detail::cache_line) std::atomic<std::uint64_t> completed_{0}; // workers
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::uint64_t> cancelled_{0};
    std::atomic<std::size_t> busy_{0};
    detail::latency_histogram queue_wait_;
    detail::latency_histogram run_time_;
};

inline thread_pool::thread_pool(thread_pool_options opts)
    : name_(opts.name.empty() ? std::string("offload") : std::move(opts.name)), max_queued_(opts.max_queued) {
    std::size_t n = opts.workers ? opts.workers : available_cpus();
    if (n > 4096)
        throw std::invalid_argument(fmt::format("offload: thread_pool_options.workers = {} is not a sensible pool "
                                                "size; use 0 for available_cpus() or a number up to 4096",
                                                n));
    free_slots_ = max_queued_;
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

inline thread_pool::~thread_pool() { shutdown(true, false); }

inline void thread_pool::check_open() const {
    if (closed_.load(std::memory_order_acquire))
        throw executor_closed(fmt::format("offload::executor_closed: thread pool '{}' was shut down and takes no new "
                                          "calls; submit before shutdown() or use another executor",
                                          name_));
}

inline void thread_pool::note_queued() noexcept {
    std::size_t q = queued_.fetch_add(1, std::memory_order_relaxed) + 1;
    std::size_t m = max_seen_queued_.load(std::memory_order_relaxed);
    while (q > m && !max_seen_queued_.compare_exchange_weak(m, q, std::memory_order_relaxed)) {
    } // a CAS only when the high-water mark moves
}

inline bool thread_pool::admit(detail::pool_job* j) {
    check_open();
    submitted_.fetch_add(1, std::memory_order_relaxed);
    if (max_queued_ == 0) return true;
    std::lock_guard lk(slot_mu_);
    if (free_slots_ > 0 && slot_waiters_.empty()) {
        --free_slots_;
        return true;
    }
    j->state.store(detail::job_state::waiting_slot, std::memory_order_relaxed);
    j->slots = this;
    j->refs.fetch_add(1, std::memory_order_relaxed); // the pool's, while it waits
    slot_waiters_.push_back(j);
    return false;
}

inline bool thread_pool::cancel_waiting(detail::pool_job* j) noexcept {
    std::lock_guard lk(slot_mu_);
    auto it = std::find(slot_waiters_.begin(), slot_waiters_.end(), j);
    if (it == slot_waiters_.end()) return false; // granted already: the grant is on its way
    slot_waiters_.erase(it);
    cancelled_.fetch_add(1, std::memory_order_relaxed);
    j->unref();
    return true;
}

inline void thread_pool::release_slot() noexcept {
    if (max_queued_ == 0) return;
    detail::pool_job* next = nullptr;
    {
        std::lock_guard lk(slot_mu_);
        if (slot_waiters_.empty()) {
            ++free_slots_;
            return;
        }
        next = slot_waiters_.front(); // hand the slot over directly: FIFO, no barging
        slot_waiters_.pop_front();
    }
    next->posted = detail::pool_job::event::slot;
    next->loop->post_remote(next);
}

// Queues an admitted call. Returns false (the call resolves with
// executor_closed) if the pool closed since admit().
inline bool thread_pool::enqueue(detail::pool_job* j, bool holds_pool_ref) {
    // Shutdown waits for in-progress submissions, so none lands after the workers left.
    submitting_.fetch_add(1, std::memory_order_seq_cst);
    if (closed_.load(std::memory_order_seq_cst)) {
        submitting_.fetch_sub(1, std::memory_order_release);
        cancelled_.fetch_add(1, std::memory_order_relaxed);
        release_slot();
        if (holds_pool_ref) j->unref();
        return false;
    }
    j->state.store(detail::job_state::queued, std::memory_order_relaxed);
    j->enqueued = detail::clock::now();
    if (!holds_pool_ref) j->refs.fetch_add(1, std::memory_order_relaxed); // the pool's, until the call is done
    note_queued();
    if (overflow_size_.load(std::memory_order_relaxed) != 0 || !ring_.try_push(j)) {
        std::lock_guard lk(overflow_mu_);
        overflow_.push_back(j);
        overflow_size_.fetch_add(1, std::memory_order_release);
    }
    submitting_.fetch_sub(1, std::memory_order_release);
    // Dekker pairing with park(): it announces itself in sleepers_ and then
    // re-checks the queue; we publish the job and then read sleepers_. No
    // wake-up while a worker spins, nor once the queue is empty again: then a
    // spinner already took the job (it often does before we get here).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_relaxed) > 0 && spinning_.load(std::memory_order_relaxed) == 0 &&
        !queue_empty())
        wake_one();
    return true;
}

inline bool thread_pool::cancel_queued(detail::pool_job* j) noexcept {
    auto expected = detail::job_state::queued;
    if (!j->state.compare_exchange_strong(expected, detail::job_state::dropped, std::memory_order_acq_rel)) return false;
    // The pointer stays in the queue; the worker that pops it drops it.
    queued_.fetch_sub(1, std::memory_order_relaxed);
    cancelled_.fetch_add(1, std::memory_order_relaxed);
    release_slot();
    return true;
}

inline detail::pool_job* thread_pool::pop() noexcept {
    if (detail::pool_job* j = ring_.try_pop()) return j;
    if (overflow_size_.load(std::memory_order_acquire) == 0) return nullptr;
    std::lock_guard lk(overflow_mu_);
    if (overflow_.empty()) return nullptr;
    detail::pool_job* j = overflow_.front();
    overflow_.pop_front();
    overflow_size_.fetch_sub(1, std::memory_order_release);
    return j;
}

// Returns true when it counted the worker in spinning_ (see worker_main).
inline bool thread_pool::run_job(detail::pool_job* j) noexcept {
    auto expected = detail::job_state::queued;
    if (!j->state.compare_exchange_strong(expected, detail::job_state::running, std::memory_order_acq_rel)) {
        j->unref(); // cancelled while queued
        return false;
    }
    busy_.fetch_add(1, std::memory_order_relaxed);
    queued_.fetch_sub(1, std::memory_order_relaxed);
    release_slot();
    auto t0 = detail::clock::now();
    queue_wait_.record(static_cast<std::uint64_t>((t0 - j->enqueued).count()));
    j->execute();
    run_time_.record(static_cast<std::uint64_t>((detail::clock::now() - t0).count()));
    expected = detail::job_state::running;
    bool deliver = j->state.compare_exchange_strong(expected, detail::job_state::finished, std::memory_order_acq_rel);
    if (!deliver)
        cancelled_.fetch_add(1, std::memory_order_relaxed); // the caller gave up while it ran
    else
        (j->failed ? failed_ : completed_).fetch_add(1, std::memory_order_relaxed);
    busy_.fetch_sub(1, std::memory_order_relaxed);
    // Count ourselves as looking for work before the result reaches the loop:
    // a call it submits in response then finds a spinner and wakes nobody.
    spinning_.fetch_add(1, std::memory_order_seq_cst);
    if (deliver) {
        j->posted = detail::pool_job::event::finished;
        j->loop->post_remote(j); // the pool's reference travels with it; j is not ours any more
    } else {
        j->unref();
    }
    return true;
}

// `counted`: the caller is already counted in spinning_ (run_job announced it).
inline void thread_pool::park(bool counted) noexcept {
    // Spin first (a few spinners at most): a call submitted within the budget
    // is picked up without any syscall on either side.
    int before = counted ? spinning_.load(std::memory_order_relaxed) - 1
                         : spinning_.fetch_add(1, std::memory_order_acq_rel);
    if (before < static_cast<int>(max_spinners_)) {
        auto until = detail::clock::now() + spin_budget;
        for (unsigned i = 1;; ++i) {
            if (!queue_empty() || stopping_.load(std::memory_order_relaxed)) {
                spinning_.fetch_sub(1, std::memory_order_acq_rel);
                return; // worker_main wakes a sleeper if more than this job is queued
            }
            detail::cpu_relax();
            if ((i & 63) == 0 && detail::clock::now() >= until) break;
        }
    }
    spinning_.fetch_sub(1, std::memory_order_acq_rel);
    std::uint32_t seq = wake_seq_.load(std::memory_order_acquire);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (queue_empty() && !stopping_.load(std::memory_order_acquire)) detail::futex_wait(wake_seq_, seq);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

inline void thread_pool::worker_main() {
    bool looking = false; // counted in spinning_ by run_job: about to look for the next job
    for (;;) {
        if (detail::pool_job* j = pop()) {
            if (looking) spinning_.fetch_sub(1, std::memory_order_acq_rel);
            // More queued than this job and nobody spinning: wake a sleeper for it
            // (only then: a wake-up per call would cost a syscall each time).
            if (spinning_.load(std::memory_order_relaxed) == 0 && sleepers_.load(std::memory_order_relaxed) > 0 &&
                !queue_empty())
                wake_one();
            looking = run_job(j);
            continue;
        }
        if (stopping_.load(std::memory_order_acquire) && queue_empty()) {
            if (looking) spinning_.fetch_sub(1, std::memory_order_acq_rel);
            return;
        }
        park(looking);
        looking = false;
    }
}

inline void thread_pool::resolve_closed(detail::pool_job* j) noexcept {
    j->closed = true;
    j->posted = detail::pool_job::event::finished;
    cancelled_.fetch_add(1, std::memory_order_relaxed);
    j->loop->post_remote(j);
}

inline void thread_pool::drop_queued_as_closed() noexcept {
    {
        std::deque<detail::pool_job*> waiters;
        {
            std::lock_guard lk(slot_mu_);
            waiters.swap(slot_waiters_);
        }
        for (auto* j : waiters) {
            j->state.store(detail::job_state::dropped, std::memory_order_relaxed);
            resolve_closed(j);
        }
    }
    while (detail::pool_job* j = pop()) {
        auto expected = detail::job_state::queued;
        if (j->state.compare_exchange_strong(expected, detail::job_state::dropped, std::memory_order_acq_rel)) {
            queued_.fetch_sub(1, std::memory_order_relaxed);
            resolve_closed(j);
        } else {
            j->unref(); // the caller had cancelled it
        }
    }
}

inline void thread_pool::shutdown(bool wait, bool cancel_pending) {
    closed_.store(true, std::memory_order_seq_cst);
    while (submitting_.load(std::memory_order_seq_cst) != 0) detail::cpu_relax();
    if (cancel_pending) drop_queued_as_closed();
    stopping_.store(true, std::memory_order_seq_cst);
    wake_seq_.fetch_add(1, std::memory_order_release);
    detail::futex_wake(wake_seq_, INT_MAX);
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

inline executor_stats thread_pool::stats() const {
    executor_stats s;
    s.workers = threads_.size();
    s.busy = busy_.load(std::memory_order_relaxed);
    s.queued = queued_.load(std::memory_order_relaxed);
    s.max_queued = max_seen_queued_.load(std::memory_order_relaxed);
    s.submitted = submitted_.load(std::memory_order_relaxed);
    s.completed = completed_.load(std::memory_order_relaxed);
    s.failed = failed_.load(std::memory_order_relaxed);
    s.cancelled = cancelled_.load(std::memory_order_relaxed);
    s.queue_wait = detail::percentiles_of(queue_wait_);
    s.run_time = detail::percentiles_of(run_time_);
    return s;
}

namespace detail {
struct thread_pool_holder final : executor_holder {
    thread_pool pool;
    explicit thread_pool_holder(thread_pool_options o) : pool(std::move(o)) {}
};
} // namespace detail

inline thread_pool& event_loop::default_thread_pool() {
    if (!default_pool_) {
        std::size_t n = std::min<std::size_t>(32, available_cpus() + 4);
        default_pool_ = std::make_unique<detail::thread_pool_holder>(
            thread_pool_options{.workers = n, .max_queued = 0, .name = "offload-default"});
    }
    return static_cast<detail::thread_pool_holder&>(*default_pool_).pool;
}

inline thread_pool& event_loop::default_executor() {
    return default_executor_ ? *default_executor_ : default_thread_pool();
}

} // namespace offload
