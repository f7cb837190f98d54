// offload/barrier.hpp — barrier (asyncio.Barrier, Python 3.11): a meeting
// point for a fixed number of tasks of one event loop. Each wait() suspends
// until `parties` tasks have arrived, then all of them go on together, and
// the barrier is ready for the next round. abort() breaks it, reset() returns
// it to the empty state; waiters caught by either throw broken_barrier_error.
#pragma once

#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/tasks/list_waiter.hpp>
#include <offload/errors.hpp>

#include <coroutine>
#include <cstddef>
#include <source_location>
#include <stdexcept>
#include <utility>

namespace offload {

/// A cyclic barrier for tasks of one event loop (asyncio.Barrier).
///
/// Rounds: the task that arrives as number `parties` releases the round —
/// every task waiting resumes, each with its arrival index (0 for the first
/// that arrived, `parties - 1` for the last, as asyncio) — and the barrier is
/// at once empty again, ready for the next round. A released task is
/// released for good: a reset() or abort() right after the release does not
/// affect it even if it has not run yet (asyncio would throw
/// BrokenBarrierError in a released task that has not run yet; here the
/// round that completed stays completed). Indices are unique within a round
/// even when a waiter was cancelled while the round filled (asyncio may then
/// repeat one): they are handed out when the round is released.
///
/// Thread safety: loop-local; not thread-safe. It may be constructed outside
/// a loop. In debug mode, a call from another thread while tasks wait on it
/// throws std::logic_error.
/// Cancellation: a waiter cancelled while the round fills leaves it (the
/// barrier is not broken, n_waiting() drops by one, as asyncio), and its
/// wait() throws cancelled_error. A waiter cancelled after the release but
/// before its task ran also throws cancelled_error (as asyncio, whose
/// released waiter still has to resume): its index is not returned, and the
/// round stays complete for the others (nothing is given back; the barrier is
/// not broken). Once the task has resumed, a cancellation is thrown at its
/// next await.
/// Example:
/// ```
/// barrier b(3);
/// // in each of 3 tasks:
/// std::size_t i = co_await b.wait();   // all three resume together
/// if (i == 0) log("round done");
/// ```
class barrier {
public:
    /// Awaiter of wait(): the wait-list node; resumes with the arrival index.
    struct wait_awaiter final : detail::list_waiter<wait_awaiter> {
        barrier* b; ///< The barrier waited at.
        std::size_t index = 0; ///< The arrival index that wait() returns.
        bool broken = false; ///< Woken by abort() or reset(), or the barrier was broken

        /// A wait at `bar`; `loc` is the caller, for debug-mode reports.
        wait_awaiter(barrier* bar, std::source_location loc) noexcept : list_waiter(loc), b(bar) {}
        /// Moves an awaiter that is not waiting yet.
        wait_awaiter(wait_awaiter&& o) noexcept : list_waiter(std::move(o)), b(o.b) {}
        // A frame destroyed while it waits (loop teardown) leaves the round.
        ~wait_awaiter() {
            if (linked()) --b->waiting_;
        }

        /// True when the barrier is broken, or this arrival completes the round (it then releases it).
        bool await_ready() {
            if (b->broken_) {
                broken = true;
                return true;
            }
            if (b->waiting_ + 1 < b->parties_) return false;
            index = b->waiting_; // the last arrival releases the round
            b->release_round();
            return true;
        }
        /// Joins the round (false: a pending cancellation, thrown at once).
        bool await_suspend(std::coroutine_handle<> h) {
            if (!suspend_in(b->waiters_, h)) return false;
            ++b->waiting_;
            return true;
        }
        /// The arrival index; broken_barrier_error if the barrier was broken or reset.
        std::size_t await_resume() {
            finish_wait();
            if (broken) throw broken_barrier_error();
            return index;
        }
        /// Leaves a round that is still filling, and throws cancelled_error.
        void cancel() noexcept override {
            if (linked()) --b->waiting_; // leaves the round that fills (not once released)
            list_waiter::cancel();
        }
    };

    /// A barrier for `parties` tasks; throws std::invalid_argument if it is 0
    /// (asyncio raises ValueError).
    explicit barrier(std::size_t parties) : parties_(parties) {
        if (parties == 0)
            throw std::invalid_argument("offload: barrier(0): a barrier needs at least one party; pass the number "
                                        "of tasks that must meet at it");
    }
    barrier(const barrier&) = delete;
    barrier& operator=(const barrier&) = delete;
    /// Destroying a barrier that tasks still wait on is a bug; the waiters are
    /// detached so that their frames can still be destroyed safely.
    ~barrier() { waiters_.clear(); }

    /// Awaits the other parties and returns this task's arrival index
    /// (0 .. parties()-1). Throws broken_barrier_error if the barrier is
    /// broken, or is aborted or reset while this task waits.
    /// Cancellation: see the class comment.
    [[nodiscard]] wait_awaiter wait(std::source_location loc = std::source_location::current()) {
        check_thread("barrier::wait");
        return wait_awaiter(this, loc);
    }

    /// Returns the barrier to the empty, unbroken state; the tasks waiting now
    /// throw broken_barrier_error (asyncio's reset(), which needs no await here).
    void reset() {
        check_thread("barrier::reset");
        break_waiters();
        broken_ = false;
    }

    /// Breaks the barrier: the tasks waiting now, and every later wait() until
    /// reset(), throw broken_barrier_error. Use it when one party failed, so
    /// that the others do not wait forever.
    void abort() {
        check_thread("barrier::abort");
        broken_ = true;
        break_waiters();
    }

    /// The number of tasks that must meet.
    std::size_t parties() const noexcept { return parties_; }
    /// The number of tasks waiting in the round that fills now.
    std::size_t n_waiting() const noexcept { return waiting_; }
    /// True after abort(), until reset().
    bool broken() const noexcept { return broken_; }

private:
    // Releases every waiter, with indices in arrival order; the barrier is empty again.
    void release_round() {
        std::size_t i = 0;
        while (wait_awaiter* w = waiters_.pop_front()) {
            w->index = i++;
            w->serve();
        }
        waiting_ = 0;
    }

    void break_waiters() {
        while (wait_awaiter* w = waiters_.pop_front()) {
            w->broken = true;
            w->serve();
        }
        waiting_ = 0;
    }

    void check_thread(const char* what) const { detail::check_waiters_thread(waiters_, what); }

    std::size_t parties_;
    std::size_t waiting_ = 0; // tasks in waiters_
    bool broken_ = false;
    detail::intrusive_list<wait_awaiter> waiters_;
};

} // namespace offload
