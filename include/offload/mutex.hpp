// offload/mutex.hpp — mutex (asyncio.Lock): mutual exclusion between tasks of
// one event loop, held across suspension points. Waiting allocates nothing
// (the awaiter is the wait-list node), and unlock() hands the lock straight to
// the oldest waiter, so waiters get it in FIFO order and nobody barges in.
#pragma once

#include <offload/detail/tasks/permits.hpp>

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
    /// Takes over `o`'s lock; `o` then owns none.
    mutex_guard(mutex_guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    /// Unlocks the mutex owned (if any), then takes over `o`'s lock.
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
/// State: one permit (detail::permits); taken means locked. Invariant: while a
/// task waits, the mutex is locked — unlock() passes the lock to the oldest
/// waiter without releasing it (direct hand-off).
///
/// Thread safety: loop-local; not thread-safe. It may be constructed outside a
/// loop. In debug mode, a call from another thread while tasks wait on it
/// throws std::logic_error.
/// Cancellation: a cancelled lock() does not take the lock and throws
/// cancelled_error — also one that was already handed the lock but whose task
/// had not run yet: it passes the lock on to the next waiter (or unlocks), as
/// asyncio. Once the task has resumed holding the lock, a cancellation is
/// thrown at its next await (a guard then unlocks it).
/// Example: `{ auto g = co_await m.scoped_lock(); co_await write_all(fd, buf); }`
class mutex {
public:
    /// Awaiter of lock(): it is the wait-list node, so locking allocates nothing.
    using lock_awaiter = detail::permits::acquire_awaiter;

    /// Awaiter of scoped_lock(): lock_awaiter that yields a mutex_guard.
    struct scoped_lock_awaiter : lock_awaiter {
        /// The mutex the guard will unlock.
        mutex* m;
        /// Awaits the lock of `mx`; `loc` is the caller, for debug-mode reports.
        scoped_lock_awaiter(mutex* mx, std::source_location loc) noexcept : lock_awaiter(&mx->permit_, loc), m(mx) {}
        /// The lock, as a guard (or cancelled_error: see lock()).
        [[nodiscard]] mutex_guard await_resume() {
            lock_awaiter::await_resume();
            return mutex_guard(m);
        }
    };

    mutex() noexcept = default;
    mutex(const mutex&) = delete;
    mutex& operator=(const mutex&) = delete;
    /// Destroying a mutex that tasks still wait on is a bug; the waiters are
    /// detached so that their frames can still be destroyed safely.
    ~mutex() = default;

    /// Awaits the lock: returns at once if it is free, else waits in FIFO order.
    [[nodiscard]] lock_awaiter lock(std::source_location loc = std::source_location::current()) noexcept {
        return lock_awaiter(&permit_, loc);
    }

    /// Awaits the lock and returns a guard that unlocks it (asyncio's `async with lock:`).
    [[nodiscard]] scoped_lock_awaiter scoped_lock(std::source_location loc = std::source_location::current()) noexcept {
        return scoped_lock_awaiter(this, loc);
    }

    /// Takes the lock if it is free; never waits.
    [[nodiscard]] bool try_lock() {
        permit_.check_thread("mutex::try_lock");
        return permit_.try_take();
    }

    /// Unlocks: the oldest waiter (if any) gets the lock and resumes soon.
    /// Throws std::logic_error if the mutex is not locked.
    void unlock() {
        permit_.check_thread("mutex::unlock");
        if (!locked())
            throw std::logic_error("offload: mutex::unlock() called on a mutex that is not locked; unlock only "
                                   "what you locked (a mutex_guard from scoped_lock() does it for you)");
        permit_.give();
    }

    /// True while some task holds the lock.
    bool locked() const noexcept { return permit_.free() == 0; }

private:
    friend class mutex_guard;
    friend class condition; // a condition's waiters queue on the permit directly

    // One permit: free means unlocked. A waiter handed the permit holds the lock.
    detail::permits permit_{1};
};

inline void mutex_guard::unlock() noexcept {
    if (mutex* m = std::exchange(m_, nullptr)) m->permit_.give();
}

} // namespace offload
