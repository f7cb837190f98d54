// offload/detail/tasks/permits.hpp — what semaphore, mutex and condition are
// made of: a count of free permits and the FIFO of tasks waiting for one.
//
// Fairness. give() hands its permit straight to the oldest waiter (direct
// hand-off) instead of counting it, so a task that arrives later never takes
// a permit meant for a waiter. A waiter handed a permit has not run yet: it
// moves to `granted_`, and stays "in line" there until it resumes. While
// anybody is in line (waiting or granted), a newcomer queues even if a permit
// is free — as asyncio, where a woken waiter stays in `_waiters` until it
// runs: a task that releases and at once acquires again goes behind the
// waiter it just woke (1,2,3,4, not 1,2,4,3). When a granted waiter resumes,
// it hands the permits that became free meanwhile to the waiters behind it.
//
// Cancellation (asyncio's model, see list_waiter.hpp): a waiter cancelled
// while it waits takes no permit; one cancelled after it was handed a permit,
// before its task ran, passes the permit on — to the oldest waiter, else back
// to the count — and its await throws cancelled_error. A permit is never lost.
//
// Invariant: free_ > 0 and a task waiting imply granted_ is not empty (its
// resumption will serve the waiters). Nothing else ever leaves a waiter
// stranded next to a free permit.
#pragma once

#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/tasks/list_waiter.hpp>

#include <coroutine>
#include <cstddef>
#include <source_location>

namespace offload::detail {

class permits {
public:
    /// Waits for one permit. A cancelled wait takes none: one cancelled after
    /// it was handed a permit, before its task ran, passes the permit on.
    struct acquire_awaiter : list_waiter<acquire_awaiter> {
        permits* pool;
        bool granted = false; // handed a permit, and in pool->granted_ until it resumes

        acquire_awaiter(permits* p, std::source_location loc) noexcept : list_waiter(loc), pool(p) {}
        acquire_awaiter(acquire_awaiter&& o) noexcept : list_waiter(std::move(o)), pool(o.pool) {}
        // A frame destroyed between the grant and its resumption (loop
        // teardown) gives the unused permit back; nobody is woken, the loop is
        // going away. If the pool died first, its destructor unlinked us.
        ~acquire_awaiter() {
            if (granted && linked()) {
                unlink();
                ++pool->free_;
            }
        }

        bool await_ready() noexcept { return pool->try_take(); }
        bool await_suspend(std::coroutine_handle<> h) { return suspend_in(pool->waiters_, h); }
        void await_resume() {
            end_wait(); // first: resumed() may hand permits on
            pool->resumed(this);
            throw_if_cancelled();
        }
        // Cancelled after the grant, before the task ran: the permit goes on.
        void give_back() noexcept {
            if (granted) pool->pass_on(this);
        }
    };

    explicit permits(std::size_t n) noexcept : free_(n) {}
    permits(const permits&) = delete;
    permits& operator=(const permits&) = delete;
    /// Waiters left behind (a bug of the owner) are detached, so that their
    /// frames can still be destroyed safely.
    ~permits() {
        waiters_.clear();
        granted_.clear();
    }

    /// Takes a permit if one is free and nobody is in line before the caller.
    bool try_take() noexcept {
        if (!available()) return false;
        --free_;
        return true;
    }
    /// Returns a permit: to the oldest waiter (it resumes soon), else to the count.
    void give() {
        if (acquire_awaiter* w = waiters_.pop_front())
            hand_over(w);
        else
            ++free_;
    }
    /// For an awaiter already suspended elsewhere (a condition's waiter after
    /// notify, or cancelled there): takes a permit for it now if try_take()
    /// would succeed, else queues it as if it had called acquire().
    void take_or_enqueue(acquire_awaiter* w) {
        if (try_take())
            hand_over(w);
        else
            waiters_.push_back(w);
    }
    /// Takes a free permit whoever waits (false if none is free): for a
    /// condition's waiter destroyed with its loop while it did not hold the
    /// mutex, whose caller's guard will unlock it once more.
    bool take_back() noexcept {
        if (free_ == 0) return false;
        --free_;
        return true;
    }
    /// True if try_take() would succeed: a permit is free and nobody is in line.
    bool available() const noexcept { return free_ > 0 && waiters_.empty() && granted_.empty(); }
    std::size_t free() const noexcept { return free_; }
    void check_thread(const char* what) const {
        check_waiters_thread(waiters_, what);
        check_waiters_thread(granted_, what);
    }

private:
    // `w` owns a permit from now on; it stays in line until it resumes (a
    // cancel before that gives the permit back: see pass_on()).
    void hand_over(acquire_awaiter* w) {
        w->granted = true;
        granted_.push_back(w);
        w->serve();
    }

    // Called by every awaiter as it resumes. A granted one leaves the line and
    // serves those who queued behind it while permits were free (see above).
    void resumed(acquire_awaiter* w) {
        if (!w->granted) return;
        w->granted = false;
        w->unlink();
        serve_waiting();
    }

    // A granted waiter was cancelled before it ran: it leaves the line, and
    // its permit goes to the oldest waiter, else back to the count (with any
    // permits that became free meanwhile, as resumed() would have done).
    void pass_on(acquire_awaiter* w) noexcept {
        w->granted = false;
        w->unlink();
        ++free_;
        serve_waiting();
    }

    void serve_waiting() {
        while (free_ > 0) {
            acquire_awaiter* next = waiters_.pop_front();
            if (!next) break;
            --free_;
            hand_over(next);
        }
    }

    std::size_t free_;
    intrusive_list<acquire_awaiter> waiters_; // suspended, no permit yet (FIFO)
    intrusive_list<acquire_awaiter> granted_; // handed a permit, not resumed yet
};

} // namespace offload::detail
