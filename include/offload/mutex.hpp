// offload/mutex.hpp — mutex (asyncio.Lock): mutual exclusion between tasks of
// one event loop, held across suspension points. Waiting allocates nothing
// (the awaiter is the wait-list node), and unlock() hands the lock straight to
// the oldest waiter, so waiters get it in FIFO order and nobody barges in.
#pragma once

#include <offload/detail/intrusive_list.hpp>
#include <offload/detail/scheduler.hpp>

#include <coroutine>
#include <source_location>
#include <stdexcept>
#include <utility>

namespace offload {

class mutex;

/// Holds a mutex and unlocks it on destruction (`async with lock:`).
/// Move-only. Thread safety: use it on its loop's thread only.
class mutex_guard {
public:
    mutex_guard() noexcept = default;
    /// Adopts a lock already taken on `m` (as by try_lock()).
    explicit mutex_guard(mutex* m) noexcept : m_(m) {}
    mutex_guard(mutex_guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    mutex_guard& operator=(mutex_guard&& o) noexcept {
        if (this != &o) {
            unlock();
            m_ = std::exchange(o.m_, nullptr);
        }
        return *this;
    }
    ~mutex_guard() { unlock(); }

    /// Unlocks now (if still held).
    void unlock() noexcept;
    /// True while the guard holds the lock.
    explicit operator bool() const noexcept { return m_ != nullptr; }

private:
    mutex* m_ = nullptr;
};

/// A non-recursive lock for tasks of one event loop (asyncio.Lock). It has no
/// owner: any task may unlock it, as in asyncio.
///
/// State: `locked_`. Invariant: while a task waits, locked_ is true — unlock()
/// passes the lock to the oldest waiter without clearing it (direct hand-off).
///
/// Thread safety: loop-local; not thread-safe. It may be constructed outside a
/// loop. In debug mode, a call from another thread while tasks wait on it
/// throws std::logic_error.
/// Cancellation: a cancelled lock() does not take the lock; a lock() that was
/// already handed the lock returns holding it, and the cancellation is thrown
/// at the task's next suspension point (a guard then unlocks it).
/// Example: `{ auto g = co_await m.scoped_lock(); co_await write_all(fd, buf); }`
class mutex {
public:
    /// Awaiter of lock(): it is the wait-list node, so locking allocates nothing.
    struct lock_awaiter : detail::waiter, detail::list_hook {
        mutex* m;

        lock_awaiter(mutex* mx, std::source_location loc) noexcept : waiter(loc), m(mx) {}
        // Movable until awaited (so it can be handed to gather or wait_for).
        lock_awaiter(lock_awaiter&& o) noexcept : waiter(o.where), list_hook(), m(o.m) {}
        lock_awaiter& operator=(const lock_awaiter&) = delete;
        // A frame destroyed while waiting (loop teardown) leaves the queue.
        ~lock_awaiter() { detail::intrusive_list<lock_awaiter>::erase(this); }

        bool await_ready() noexcept {
            // Unlocked implies nobody waits (see the invariant), so taking it is fair.
            if (m->locked_) return false;
            m->locked_ = true;
            return true;
        }
        bool await_suspend(std::coroutine_handle<> h) {
            if (!arm(h)) return false; // a pending cancellation: throw, take nothing
            m->waiters_.push_back(this);
            return true;
        }
        void await_resume() const { throw_if_cancelled(); }

        void cancel() noexcept override {
            // Once handed the lock we are unlinked and no longer ctx->waiter, so
            // this only runs while queued; the scheduler records cancel_pending otherwise.
            if (!linked()) return;
            detail::intrusive_list<lock_awaiter>::erase(this);
            wake_cancelled();
        }
    };

    /// Awaiter of scoped_lock(): lock_awaiter that yields a mutex_guard.
    struct scoped_lock_awaiter : lock_awaiter {
        using lock_awaiter::lock_awaiter;
        [[nodiscard]] mutex_guard await_resume() const {
            throw_if_cancelled();
            return mutex_guard(m);
        }
    };

    mutex() noexcept = default;
    mutex(const mutex&) = delete;
    mutex& operator=(const mutex&) = delete;
    /// Destroying a mutex that tasks still wait on is a bug; the waiters are
    /// detached so that their frames can still be destroyed safely.
    ~mutex() {
        while (waiters_.pop_front()) {
        }
    }

    /// Awaits the lock: returns at once if it is free, else waits in FIFO order.
    [[nodiscard]] lock_awaiter lock(std::source_location loc = std::source_location::current()) noexcept {
        return lock_awaiter(this, loc);
    }

    /// Awaits the lock and returns a guard that unlocks it (asyncio's `async with lock:`).
    [[nodiscard]] scoped_lock_awaiter scoped_lock(std::source_location loc = std::source_location::current()) noexcept {
        return scoped_lock_awaiter(this, loc);
    }

    /// Takes the lock if it is free; never waits.
    [[nodiscard]] bool try_lock() {
        check_thread("mutex::try_lock");
        if (locked_) return false;
        locked_ = true;
        return true;
    }

    /// Unlocks: the oldest waiter (if any) gets the lock and resumes soon.
    /// Throws std::logic_error if the mutex is not locked.
    void unlock() {
        check_thread("mutex::unlock");
        if (!locked_)
            throw std::logic_error("offload: mutex::unlock() called on a mutex that is not locked; unlock only "
                                   "what you locked (a mutex_guard from scoped_lock() does it for you)");
        pass();
    }

    /// True while some task holds the lock.
    bool locked() const noexcept { return locked_; }

private:
    friend class mutex_guard;

    void pass() {
        if (lock_awaiter* w = waiters_.pop_front())
            w->wake(); // locked_ stays true: the waiter now holds it
        else
            locked_ = false;
    }

    // The loop of a waiting task is alive (its frame is), so it can tell
    // whether this thread is that loop's; with nobody waiting, nothing is checked.
    void check_thread(const char* what) const {
        if (lock_awaiter* w = waiters_.front()) w->loop->check_thread(what);
    }

    bool locked_ = false;
    detail::intrusive_list<lock_awaiter> waiters_;
};

inline void mutex_guard::unlock() noexcept {
    if (mutex* m = std::exchange(m_, nullptr)) m->pass();
}

} // namespace offload
