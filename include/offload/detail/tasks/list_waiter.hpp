// offload/detail/tasks/list_waiter.hpp — the one skeleton of every awaiter
// that waits in a primitive's intrusive FIFO list (semaphore, mutex, event,
// queue get/put/join, condition, barrier): the awaiter is the list node, so
// waiting allocates nothing, and a cancelled waiter unlinks itself in O(1). A
// primitive adds only what differs: when it is ready at once, what it hands
// over, and how it takes that back.
//
// Serving and cancellation (asyncio's model). A primitive that serves a waiter
// (hands it a permit, an item, a slot, a wake-up) calls serve(): the task is
// scheduled, and the waiter stays the task's registered waiter (ctx->waiter)
// until the task resumes. A cancel() arriving in between — the wake-up is
// queued, the task has not run — gives back what was handed over (the
// Derived's give_back(): the permit or the item goes to the next waiter, or
// back into the primitive), and the await throws cancelled_error; the wake-up
// already queued resumes it, nothing is scheduled twice. So an outcome is
// never lost: it is either the task's (once it resumed) or given back. Once
// the task has resumed (finish_wait() disarms), the outcome is its own, and a
// later cancellation is thrown at its next await.
//
// Opt-in: serve() and finish_wait() are used by the primitives above. An
// awaiter that calls waiter::wake() instead keeps the old hand-off rule (it is
// disarmed at once, and a cancellation that arrives before it runs is thrown
// at the task's next await).
#pragma once

#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/loop/waiter.hpp>

#include <coroutine>
#include <source_location>

namespace offload::detail {

/// `Derived` is the awaiter type its primitive keeps in an intrusive_list<Derived>.
/// Derived may define `void give_back() noexcept`: called when the waiter is
/// cancelled after serve() and before its task resumed, to return what it was
/// handed (the default gives back nothing: a wake-up only).
template <class Derived>
struct list_waiter : waiter, list_hook {
    bool served = false; // serve()d, and the task has not resumed yet

    explicit list_waiter(std::source_location loc) noexcept : waiter(loc) {}
    // Movable until awaited (so it can be handed to gather or wait_for).
    list_waiter(list_waiter&& o) noexcept : waiter(o.where), list_hook() {}
    list_waiter& operator=(const list_waiter&) = delete;
    // A frame destroyed while waiting, or served and not resumed (loop
    // teardown), leaves the list; ~waiter disarms.
    ~list_waiter() { unlink(); }

    /// For await_suspend: registers with the task and joins `list`; false
    /// (do not suspend: the await throws) if a cancellation is pending.
    bool suspend_in(intrusive_list<Derived>& list, std::coroutine_handle<> h) {
        if (!arm(h)) return false;
        list.push_back(static_cast<Derived*>(this));
        return true;
    }

    /// For the primitive, once it has handed this (unlinked) waiter its outcome:
    /// schedules the task, and stays its registered waiter until it resumes,
    /// so that a cancel() in between gives the outcome back (see above).
    void serve() {
        served = true;
        loop->schedule(ctx, handle);
    }

    /// First thing in every await_resume: the task runs again, so the outcome
    /// is its own from now on (a later cancellation waits for its next await).
    void end_wait() noexcept {
        served = false;
        disarm();
    }

    /// end_wait(), then throws cancelled_error if the wait was cancelled,
    /// before or after serve().
    void finish_wait() {
        end_wait();
        throw_if_cancelled();
    }

    void await_resume() { finish_wait(); }

    /// The default: nothing to give back.
    void give_back() noexcept {}

    void cancel() noexcept override {
        if (served) {
            // Served, the wake-up is queued: give back, throw at this await.
            if (cancelled) return;
            cancelled = true;
            static_cast<Derived*>(this)->give_back();
            return;
        }
        if (!linked()) return; // woken by waiter::wake(): disarmed, not reached
        unlink();
        wake_cancelled();
    }
};

/// In debug mode, throws if the caller is not on the loop of the task that
/// waits first in `list`. With nobody waiting there is no loop to race with.
template <class W>
void check_waiters_thread(const intrusive_list<W>& list, const char* what) {
    if (W* w = list.front()) w->loop->check_thread(what);
}

} // namespace offload::detail
