// offload/detail/scheduler.hpp — the part of the event loop every awaitable
// needs: the ready queue, the per-thread "which loop / which task is running"
// state, the cancellation context of a task, and the `waiter` base that each
// cancellable suspension point derives from.
//
// Cancellation protocol: a running task is described by a task_context. When
// the task suspends on a cancellable awaitable, the awaitable registers itself
// as `ctx->waiter`. task_context::request_cancel() then calls waiter->cancel(),
// which unlinks the waiter from whatever it waits on and schedules the task so
// that the await throws cancelled_error. When the task is not suspended on a
// waiter (it is running, or its wake-up is already queued), the request is
// remembered in `cancel_pending` and thrown at the next suspension point: an
// outcome that already arrived (a permit, a queue item) is never thrown away.
#pragma once

#include <offload/detail/intrusive_list.hpp>
#include <offload/detail/ring_queue.hpp>
#include <offload/detail/small_function.hpp>
#include <offload/errors.hpp>

#include <coroutine>
#include <source_location>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace offload::detail {

class scheduler;

/// A suspension point that can be cancelled.
struct cancellable {
    /// Unlinks the waiter and arranges for its task to resume with cancelled_error
    /// (or forwards the request, for a waiter that waits on another task).
    virtual void cancel() noexcept = 0;

protected:
    ~cancellable() = default;
};

/// State of one scheduled task (the root of a chain of awaited task<T>s).
struct task_context {
    scheduler* loop = nullptr;
    cancellable* waiter = nullptr; // set while suspended on a cancellable awaitable
    bool cancel_pending = false;   // a cancel that arrived while no waiter was registered
    std::string name;
    std::source_location suspended_at{}; // where the task last suspended (debug reports)

    void request_cancel() noexcept {
        if (waiter)
            waiter->cancel();
        else
            cancel_pending = true;
    }
};

/// A scheduled task as the loop sees it: it keeps a list of every task it owns,
/// to cancel leftovers (run) and to tear down pending frames (~event_loop).
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

protected:
    ~task_record() = default;
};

/// What runs on this thread right now.
struct thread_state {
    scheduler* loop = nullptr;   // the loop running on this thread, if any
    task_context* ctx = nullptr; // the task whose step is running, if any
    std::source_location resumed_at{}; // where that task resumed (debug reports)
};
inline thread_local thread_state tls;

class scheduler {
public:
    /// Queues the resumption of `h` as a step of the task `ctx`.
    void schedule(task_context* ctx, std::coroutine_handle<> h) {
        ready_.emplace_back([ctx, h] {
            tls.ctx = ctx;
            if (ctx) tls.resumed_at = ctx->suspended_at;
            h.resume();
        });
    }

    /// Queues a plain callback.
    void post(small_function fn) { ready_.emplace_back(std::move(fn)); }

    bool get_debug() const noexcept { return debug_; }

    /// In debug mode, throws std::logic_error when called from a thread other
    /// than the loop's: loop-local objects are not thread-safe.
    void check_thread(const char* what) const {
        // tls.loop == this is the cheap common case: we run on this loop's thread.
        if (debug_ && tls.loop != this && std::this_thread::get_id() != owner_)
            throw std::logic_error(std::string("offload: ") + what +
                                   " was used from a thread that does not run its event loop; it is loop-local. "
                                   "Use event_loop::call_soon_threadsafe to reach the loop from other threads");
    }

    /// A finished task hands its loop reference back here; it is dropped after
    /// the current step, so step diagnostics can still read the task's name.
    void retire(task_record* t) { retired_.push_back(t); }

    /// The task list of this loop.
    intrusive_list<task_record>& tasks() noexcept { return tasks_; }

protected:
    void release_retired() noexcept {
        for (task_record* t : retired_) t->release();
        retired_.clear();
    }

    ring_queue<small_function> ready_;
    intrusive_list<task_record> tasks_;
    std::vector<task_record*> retired_;
    bool debug_ = false;
    std::thread::id owner_ = std::this_thread::get_id();
};

/// Base of every cancellable awaiter: remembers who waits and how to resume it.
/// Usage in await_suspend: `if (!arm(h)) return false;` then link into a wait list.
struct waiter : cancellable {
    scheduler* loop = nullptr;
    task_context* ctx = nullptr;
    std::coroutine_handle<> handle;
    std::source_location where;
    bool cancelled = false;

    explicit waiter(std::source_location loc) noexcept : where(loc) {}

    /// Registers as the task's current waiter. Returns false (do not suspend;
    /// the await will throw) when a cancellation is already pending.
    bool arm(std::coroutine_handle<> h) {
        loop = tls.loop;
        if (!loop)
            throw std::logic_error("offload: this awaitable needs a running event_loop on this thread; "
                                   "start one with offload::run(...) or event_loop::run_until_complete(...)");
        ctx = tls.ctx;
        handle = h;
        if (ctx) {
            if (ctx->cancel_pending) {
                ctx->cancel_pending = false;
                cancelled = true;
                return false;
            }
            ctx->waiter = this;
            ctx->suspended_at = where;
        }
        return true;
    }

    /// Like arm(), for a wait that must not be interrupted (waiting for children
    /// to unwind): a pending cancellation is taken over in `cancelled`, and the
    /// waiter's cancel() should only set `cancelled`. rearm_cancel() hands it back.
    void arm_shielded(std::coroutine_handle<> h) {
        if (!arm(h)) {
            ctx->waiter = this;
            ctx->suspended_at = where;
        }
    }

    /// Gives a cancellation recorded by a shielded wait back to the task, to be
    /// thrown at its next suspension point.
    void rearm_cancel() noexcept {
        if (cancelled && ctx) ctx->cancel_pending = true;
        cancelled = false;
    }

    /// Resumes the task (through the ready queue) with a normal outcome.
    void wake() {
        disarm();
        loop->schedule(ctx, handle);
    }

    /// Resumes the task (through the ready queue) so that the await throws cancelled_error.
    void wake_cancelled() {
        cancelled = true;
        wake();
    }

    void disarm() noexcept {
        if (ctx && ctx->waiter == this) ctx->waiter = nullptr;
    }

    void throw_if_cancelled() const {
        if (cancelled) throw cancelled_error();
    }

protected:
    ~waiter() { disarm(); }
};

} // namespace offload::detail
