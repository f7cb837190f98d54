// offload/condition.hpp — condition (asyncio.Condition): tasks of one event
// loop wait, with a mutex released, until another task notifies them; each
// returns from wait() holding the mutex again. notify() moves a waiter
// straight into the mutex's queue (wait morphing), so waking it costs no
// extra round and a task that locks later cannot get in before it.
#pragma once

#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/tasks/list_waiter.hpp>
#include <offload/detail/tasks/permits.hpp>
#include <offload/mutex.hpp>
#include <offload/task.hpp>

#include <coroutine>
#include <cstddef>
#include <limits>
#include <source_location>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace offload {

/// A condition variable for tasks of one event loop (asyncio.Condition), built
/// on an offload::mutex: its own, or one shared with other conditions or code.
///
/// State: the mutex's permit, and the FIFO of tasks waiting for a notify().
/// A waiter is one awaiter object that moves from this FIFO to the mutex's
/// queue when notified, and resumes when the mutex is handed to it.
///
/// Thread safety: loop-local; not thread-safe. It may be constructed outside
/// a loop. In debug mode, a call from another thread while tasks wait on it
/// throws std::logic_error.
/// Cancellation: wait() always returns or throws holding the mutex, as in
/// asyncio. A wait() cancelled before it was notified re-acquires the mutex
/// (a further cancel cannot interrupt that) and throws cancelled_error. One
/// cancelled after it was notified, while it waits for the mutex, also throws
/// cancelled_error once it holds the mutex, and passes its notification on to
/// the next waiter so that none is lost. So does one cancelled after the mutex
/// was handed to it but before its task ran (asyncio's model: the wake-up is
/// not consumed); it keeps the mutex, since wait() must end holding it (asyncio
/// passes the lock on and re-acquires it; here it stays first in line). Once
/// the task has resumed, a cancellation is thrown at its next await.
/// Example:
/// ```
/// auto g = co_await cv.scoped_lock();
/// co_await cv.wait_for([&] { return !jobs.empty(); });   // consumer
/// ...
/// auto g = co_await cv.scoped_lock(); jobs.push_back(j); cv.notify();   // producer
/// ```
class condition {
public:
    /// Awaiter of wait(): the node of the condition's wait list, then of the
    /// mutex's (it is a mutex lock awaiter once notified).
    struct wait_awaiter final : detail::permits::acquire_awaiter {
        condition* cv; ///< The condition waited on.
        bool notified = false; ///< Moved to the mutex's queue by notify()
        bool queued = false;   ///< In the mutex's queue (notified or cancelled)

        /// A wait on `c`; `loc` is the caller, for debug-mode reports.
        wait_awaiter(condition* c, std::source_location loc) noexcept : acquire_awaiter(&c->m_->permit_, loc), cv(c) {}
        /// Moves an awaiter that is not waiting yet.
        wait_awaiter(wait_awaiter&& o) noexcept : acquire_awaiter(std::move(o)), cv(o.cv) {}
        // A frame destroyed while it waits (loop teardown) still has the guard
        // or the unlock() of its caller ahead, which believes it holds the
        // mutex: leave the mutex as if it had been re-acquired.
        ~wait_awaiter() {
            if (!linked()) return; // not waiting, or the list died first
            unlink();
            if (granted)
                granted = false; // it holds the mutex: the caller unlocks it
            else
                pool->take_back();
        }

        /// Always waits.
        bool await_ready() const noexcept { return false; }
        /// Releases the mutex and joins the wait list (false: a pending cancellation, thrown at once, mutex held).
        bool await_suspend(std::coroutine_handle<> h) {
            // A pending cancellation: throw at once, still holding the mutex.
            if (!arm(h)) return false;
            pool->give(); // unlock: to the oldest lock waiter, if any
            cv->waiters_.push_back(this);
            return true;
        }
        // await_resume: acquire_awaiter's (leave the mutex's line, throw if cancelled).

        /// Cancels the wait: it ends holding the mutex and throws cancelled_error;
        /// a notification it got goes to the next waiter.
        // Before the task resumed (the mutex may already be handed to it: it
        // keeps it, and throws); await_resume disarms us as the task resumes.
        void cancel() noexcept override {
            if (cancelled) return;
            cancelled = true; // thrown once the mutex is ours
            if (!queued) {
                // Not notified yet: leave the wait list, queue for the mutex.
                unlink();
                to_mutex();
            } else if (notified) {
                // The notification is ours but we will throw: pass it on.
                cv->notify_next();
            }
        }

        /// Joins the mutex's line (when notified or cancelled).
        void to_mutex() {
            queued = true;
            pool->take_or_enqueue(this);
        }
    };

    /// A condition with its own mutex.
    condition() noexcept : m_(&own_) {}
    /// A condition over `m`, which must outlive it (asyncio.Condition(lock)).
    explicit condition(mutex& m) noexcept : m_(&m) {}
    condition(const condition&) = delete;
    condition& operator=(const condition&) = delete;
    /// Destroying a condition that tasks still wait on is a bug; the waiters
    /// are detached so that their frames can still be destroyed safely.
    ~condition() { waiters_.clear(); }

    /// Awaits the mutex (as mutex::lock()).
    [[nodiscard]] mutex::lock_awaiter lock(std::source_location loc = std::source_location::current()) noexcept {
        return m_->lock(loc);
    }
    /// Awaits the mutex and returns a guard that unlocks it (`async with cv:`).
    [[nodiscard]] mutex::scoped_lock_awaiter scoped_lock(
        std::source_location loc = std::source_location::current()) noexcept {
        return m_->scoped_lock(loc);
    }
    /// Takes the mutex if it is free; never waits.
    [[nodiscard]] bool try_lock() { return m_->try_lock(); }
    /// Unlocks the mutex (as mutex::unlock()).
    void unlock() { m_->unlock(); }
    /// True while the mutex is held.
    bool locked() const noexcept { return m_->locked(); }
    /// The mutex this condition waits with.
    mutex& underlying_mutex() noexcept { return *m_; }

    /// Releases the mutex, waits for notify() or notify_all(), and returns
    /// holding the mutex again. The caller must hold the mutex: otherwise
    /// throws std::logic_error (asyncio raises RuntimeError). Like any
    /// condition variable, re-check what you wait for after it returns (or use
    /// wait_for()). Cancellation: see the class comment; it always ends
    /// holding the mutex.
    [[nodiscard]] wait_awaiter wait(std::source_location loc = std::source_location::current()) {
        check_thread("condition::wait");
        require_locked("wait");
        return wait_awaiter(this, loc);
    }

    /// Waits until `pred()` is true, holding the mutex when it tests it and
    /// when it returns; returns the last value of `pred()` (as asyncio). The
    /// caller must hold the mutex (std::logic_error otherwise). `pred` is
    /// copied into the returned task. Cancellation: as wait().
    template <class Pred>
        requires std::is_invocable_v<Pred&>
    [[nodiscard]] task<std::decay_t<std::invoke_result_t<Pred&>>> wait_for(
        Pred pred, std::source_location loc = std::source_location::current()) {
        require_locked("wait_for");
        auto result = pred();
        while (!result) {
            co_await wait(loc);
            result = pred();
        }
        co_return result;
    }

    /// Wakes up to `n` tasks waiting in wait(), oldest first: each returns from
    /// wait() once it gets the mutex, which the caller still holds. The caller
    /// must hold the mutex: otherwise throws std::logic_error.
    void notify(std::size_t n = 1) {
        check_thread("condition::notify");
        require_locked("notify");
        for (; n > 0; --n)
            if (!notify_next()) break;
    }

    /// Wakes every task waiting in wait() (see notify()).
    void notify_all() { notify(std::numeric_limits<std::size_t>::max()); }

private:
    // Moves the oldest waiter to the mutex's queue; false if nobody waits.
    bool notify_next() {
        wait_awaiter* w = waiters_.pop_front();
        if (!w) return false;
        w->notified = true;
        w->to_mutex();
        return true;
    }

    void require_locked(const char* what) const {
        if (!m_->locked())
            throw std::logic_error(std::string("offload: condition::") + what +
                                   "() called without holding the condition's mutex; lock it first "
                                   "(auto g = co_await cv.scoped_lock();), as asyncio requires");
    }

    void check_thread(const char* what) const {
        detail::check_waiters_thread(waiters_, what);
        m_->permit_.check_thread(what);
    }

    mutex own_;
    mutex* m_;
    detail::intrusive_list<wait_awaiter> waiters_;
};

} // namespace offload
