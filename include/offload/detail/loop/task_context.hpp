// offload/detail/loop/task_context.hpp — what the loop knows about the task
// whose step is running: its cancellation context, and the per-thread
// "which loop, which task" state every awaitable reads.
//
// Cancellation protocol: a running task is described by a task_context. When
// the task suspends on a cancellable awaitable, the awaitable registers itself
// as `ctx->waiter`. task_context::request_cancel() then calls waiter->cancel(),
// which unlinks the waiter from whatever it waits on and schedules the task so
// that the await throws cancelled_error. When the task is not suspended on a
// waiter (it is running, or its wake-up is already queued), the request is
// remembered in `cancel_pending` and thrown at the next suspension point.
//
// An outcome that already arrived is never lost. A wait-list waiter
// (semaphore, mutex, condition, event, queue, barrier: list_waiter.hpp) that
// was served but whose task has not resumed stays `ctx->waiter`: its cancel()
// gives back what it was handed (the permit or item goes to the next waiter,
// or back into the primitive) and its await throws cancelled_error, as
// asyncio. Other awaiters (executor calls, whose work has already run; timers,
// fds, joins) disarm when woken: the result is kept, and the cancellation is
// thrown at the next await.
//
// Requests are counted (asyncio's cancelling()/uncancel()): one delivered
// cancelled_error answers every request made so far, and a scope that
// cancelled its own task to stop a block (a timeout, a failing task_group)
// takes its request back with uncancel(); when the count drops to zero, a
// request still pending is withdrawn. A scope that finds the count above
// what it was at entry knows somebody else also wants the task to stop.
// A request is never silently dropped: a task that returns while one is
// pending ends cancelled.
#pragma once

#include <offload/detail/base/intrusive_list.hpp>

#include <coroutine>
#include <exception>
#include <source_location>
#include <string>

namespace offload::detail {

class loop_core;

/// A suspension point that can be cancelled.
struct cancellable {
    /// Unlinks the waiter and arranges for its task to resume with cancelled_error
    /// (or forwards the request, for a waiter that waits on another task).
    virtual void cancel() noexcept = 0;

protected:
    ~cancellable() = default;
};

/// State of one scheduled task (the root of a chain of awaited task<T>s).
/// Every task_context is the base of a task_record (the loop only runs tasks it made).
struct task_context {
    loop_core* loop = nullptr;
    cancellable* waiter = nullptr; // set while suspended on a cancellable awaitable
    bool cancel_pending = false;   // a cancel that arrived while no waiter was registered
    unsigned cancel_requests = 0;  // requests not taken back by uncancel() (asyncio's cancelling())
    std::string cancel_message;    // the message of the latest request that had one
    std::string name;
    std::source_location suspended_at{}; // where the task last suspended (debug reports)

    /// Asks the task to stop: its current (or next) suspension point throws
    /// cancelled_error, carrying `message` if one was given.
    void request_cancel(std::string message = {}) noexcept {
        ++cancel_requests;
        if (!message.empty()) cancel_message = std::move(message);
        if (waiter)
            waiter->cancel();
        else
            cancel_pending = true;
    }
    /// Takes one request back; at zero, a request not yet delivered is withdrawn.
    /// Returns the requests that remain.
    unsigned uncancel() noexcept {
        if (cancel_requests > 0) --cancel_requests;
        if (cancel_requests == 0) cancel_pending = false;
        return cancel_requests;
    }
};

/// A scheduled task as the loop sees it: the loop keeps a list of every task
/// it owns, to cancel leftovers (run) and to tear down pending frames.
struct task_record : task_context, list_hook {
    bool done = false;
    /// Destroys the frame of a task that never finished (loop teardown).
    virtual void abandon() noexcept = 0;
    /// The loop is going away: report what must be reported, forget the loop.
    virtual void detach() noexcept = 0;
    /// Drops a reference (the loop's, once the task finished).
    virtual void release() noexcept = 0;
    /// Takes a reference.
    virtual void retain() noexcept = 0;
    /// The root frame reached its final suspend point with `error` (or, when
    /// null, the result at `value`: its promise's std::optional<T>, null for
    /// void): takes the outcome, destroys `frame` and completes the task.
    virtual void finish_root(std::coroutine_handle<> frame, std::exception_ptr& error, void* value) noexcept = 0;

protected:
    ~task_record() = default;
};

/// What runs on this thread right now.
struct thread_state {
    loop_core* loop = nullptr;         // the loop running on this thread, if any
    task_context* ctx = nullptr;       // the task whose step is running, if any
    std::source_location resumed_at{}; // where that task resumed (debug reports)
};
inline thread_local thread_state tls;

} // namespace offload::detail
