// offload/semaphore.hpp — semaphore and bounded_semaphore (asyncio.Semaphore,
// asyncio.BoundedSemaphore): a counter of permits that tasks acquire and
// release. Waiting allocates nothing (the awaiter is the wait-list node), and
// release() hands its permit straight to the oldest waiter, so waiters are
// served in FIFO order and a task that arrives later can never barge in.
#pragma once

#include <offload/detail/tasks/permits.hpp>

#include <coroutine>
#include <cstddef>
#include <limits>
#include <source_location>
#include <stdexcept>
#include <string>
#include <utility>

namespace offload {

class semaphore;

/// Owns one permit of a semaphore and releases it on destruction (`async with sem:`).
/// Move-only. Thread safety: use it on its loop's thread only.
class semaphore_guard {
public:
    semaphore_guard() noexcept = default;
    /// Adopts one permit already taken from `s` (as by try_acquire()).
    explicit semaphore_guard(semaphore* s) noexcept : sem_(s) {}
    /// Takes over `o`'s permit; `o` then owns none.
    semaphore_guard(semaphore_guard&& o) noexcept : sem_(std::exchange(o.sem_, nullptr)) {}
    /// Releases the permit owned (if any), then takes over `o`'s.
    semaphore_guard& operator=(semaphore_guard&& o) noexcept {
        if (this != &o) {
            reset();
            sem_ = std::exchange(o.sem_, nullptr);
        }
        return *this;
    }
    ~semaphore_guard() { reset(); }

    /// Releases the permit now (if still owned).
    void reset() noexcept;
    /// True while the guard owns a permit.
    explicit operator bool() const noexcept { return sem_ != nullptr; }

private:
    semaphore* sem_ = nullptr;
};

/// A counting semaphore for tasks of one event loop (asyncio.Semaphore).
///
/// State: a count of free permits and a FIFO of waiting tasks (detail::permits).
/// Fairness: release() gives its permit to the oldest waiter (direct
/// hand-off), and a waiter handed a permit stays in line until it runs: a
/// task that releases and acquires again at once queues behind the waiter it
/// just woke, as in asyncio. So FIFO order is exact and nobody barges in.
///
/// Thread safety: loop-local; not thread-safe. It may be constructed outside a
/// loop. In debug mode, a call from another thread while tasks wait on it
/// throws std::logic_error.
/// Cancellation: a cancelled acquire() takes no permit and throws
/// cancelled_error — also one that was already handed a permit but whose task
/// had not run yet: it passes the permit on to the next waiter (or back to the
/// count), as asyncio. So no permit is ever lost. Once the task has resumed
/// holding the permit, a cancellation is thrown at its next await.
/// Example: `{ auto g = co_await sem.scoped_acquire(); co_await fetch(url); }`
class semaphore {
public:
    /// Awaiter of acquire(): it is the wait-list node, so acquiring allocates nothing.
    using acquire_awaiter = detail::permits::acquire_awaiter;

    /// Awaiter of scoped_acquire(): acquire_awaiter that yields a semaphore_guard.
    struct scoped_acquire_awaiter : acquire_awaiter {
        /// The semaphore the guard will release.
        semaphore* sem;
        /// Awaits a permit of `s`; `loc` is the caller, for debug-mode reports.
        scoped_acquire_awaiter(semaphore* s, std::source_location loc) noexcept
            : acquire_awaiter(&s->permits_, loc), sem(s) {}
        /// The acquired permit, as a guard (or cancelled_error: see acquire()).
        [[nodiscard]] semaphore_guard await_resume() {
            acquire_awaiter::await_resume();
            return semaphore_guard(sem);
        }
    };

    /// A semaphore with `n` permits.
    explicit semaphore(std::size_t n) noexcept : permits_(n) {}
    semaphore(const semaphore&) = delete;
    semaphore& operator=(const semaphore&) = delete;
    /// Destroying a semaphore that tasks still wait on is a bug; the waiters
    /// are detached so that their frames can still be destroyed safely.
    ~semaphore() = default;

    /// Awaits a permit: returns at once if one is free, else waits in FIFO order.
    /// Cancellation: see the class comment; a cancelled acquire takes no permit.
    [[nodiscard]] acquire_awaiter acquire(std::source_location loc = std::source_location::current()) noexcept {
        return acquire_awaiter(&permits_, loc);
    }

    /// Awaits a permit and returns a guard that releases it (asyncio's `async with sem:`).
    [[nodiscard]] scoped_acquire_awaiter scoped_acquire(
        std::source_location loc = std::source_location::current()) noexcept {
        return scoped_acquire_awaiter(this, loc);
    }

    /// Takes a permit if one is free; never waits.
    [[nodiscard]] bool try_acquire() {
        permits_.check_thread("semaphore::try_acquire");
        return permits_.try_take();
    }

    /// Returns a permit: to the oldest waiter if any (it resumes soon), else to the pool.
    /// A bounded_semaphore throws std::logic_error when this would exceed its initial value.
    void release() {
        permits_.check_thread("semaphore::release");
        if (permits_.free() >= bound_)
            throw std::logic_error("offload: bounded_semaphore::release() called more times than acquire(): its "
                                   "value would exceed the initial " +
                                   std::to_string(bound_) + "; release only permits you acquired");
        permits_.give();
    }

    /// True if acquire() would wait: no permit is free, or tasks are in line
    /// (waiting, or handed a permit and not yet resumed).
    bool locked() const noexcept { return !permits_.available(); }
    /// Number of free permits.
    std::size_t value() const noexcept { return permits_.free(); }

protected:
    /// The bound of a plain semaphore: release() never throws.
    static constexpr std::size_t unbounded = std::numeric_limits<std::size_t>::max();
    /// `n` permits; release() throws std::logic_error when the free permits already reach `bound` (bounded_semaphore).
    semaphore(std::size_t n, std::size_t bound) noexcept : permits_(n), bound_(bound) {}

private:
    friend class semaphore_guard;

    detail::permits permits_;
    std::size_t bound_ = unbounded;
};

/// A semaphore whose release() throws std::logic_error if it would raise the
/// value above the initial one (asyncio.BoundedSemaphore, which raises ValueError):
/// it catches a release without a matching acquire.
/// Thread safety and cancellation: as semaphore.
class bounded_semaphore : public semaphore {
public:
    /// A bounded semaphore with `n` permits, never more.
    explicit bounded_semaphore(std::size_t n) noexcept : semaphore(n, n) {}
};

inline void semaphore_guard::reset() noexcept {
    // give(), not release(): a guard never over-releases, and a destructor must not throw.
    if (semaphore* s = std::exchange(sem_, nullptr)) s->permits_.give();
}

} // namespace offload
