// offload/event.hpp — event (asyncio.Event): a flag that tasks of one event
// loop wait for. set() wakes every task waiting at that moment; wait() on a
// set event returns at once. Waiting allocates nothing: the awaiter is the
// wait-list node.
#pragma once

#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/tasks/list_waiter.hpp>

#include <coroutine>
#include <source_location>
#include <utility>

namespace offload {

/// A one-bit signal between tasks of one event loop (asyncio.Event).
///
/// Thread safety: loop-local; not thread-safe (from another thread, go through
/// event_loop::call_soon_threadsafe). It may be constructed outside a loop. In
/// debug mode, a call from another thread while tasks wait on it throws
/// std::logic_error.
/// Cancellation: a cancelled wait() leaves the wait list and throws
/// cancelled_error — also one already woken by set() whose task has not run
/// yet (asyncio's model: there is nothing to give back, the wake-up is simply
/// not consumed). Once the task has resumed, a cancellation is thrown at its
/// next await.
/// Example: `co_await ready.wait();` in consumers, `ready.set();` in the producer.
class event {
public:
    /// Awaiter of wait(): it is the wait-list node, so waiting allocates nothing.
    struct wait_awaiter final : detail::list_waiter<wait_awaiter> {
        /// The event waited on.
        event* ev;

        /// A wait on `e`; `loc` is the caller, for debug-mode reports.
        wait_awaiter(event* e, std::source_location loc) noexcept : list_waiter(loc), ev(e) {}
        /// Moves an awaiter that is not waiting yet.
        wait_awaiter(wait_awaiter&& o) noexcept : list_waiter(std::move(o)), ev(o.ev) {}

        /// True (no wait) when the flag is set.
        bool await_ready() const noexcept { return ev->set_; }
        /// Joins the wait list (false: a pending cancellation, thrown at once).
        bool await_suspend(std::coroutine_handle<> h) { return suspend_in(ev->waiters_, h); }
    };

    event() noexcept = default;
    event(const event&) = delete;
    event& operator=(const event&) = delete;
    /// Destroying an event that tasks still wait on is a bug; the waiters are
    /// detached so that their frames can still be destroyed safely.
    ~event() { waiters_.clear(); }

    /// Sets the flag and wakes every task waiting now (they resume in the order they waited).
    void set() {
        check_thread("event::set");
        set_ = true;
        while (wait_awaiter* w = waiters_.pop_front()) w->serve();
    }

    /// Clears the flag: later wait() calls block until the next set(). Tasks
    /// already woken by set() still return (unless cancelled before they run).
    void clear() {
        check_thread("event::clear");
        set_ = false;
    }

    /// True if the flag is set.
    bool is_set() const noexcept { return set_; }

    /// Awaits the flag: returns at once if it is set, else when set() is called.
    [[nodiscard]] wait_awaiter wait(std::source_location loc = std::source_location::current()) noexcept {
        return wait_awaiter(this, loc);
    }

private:
    void check_thread(const char* what) const { detail::check_waiters_thread(waiters_, what); }

    bool set_ = false;
    detail::intrusive_list<wait_awaiter> waiters_;
};

} // namespace offload
