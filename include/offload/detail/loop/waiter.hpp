// offload/detail/loop/waiter.hpp — the base of every cancellable awaiter:
// who waits (loop, task context, coroutine), where (for debug reports), and
// the moves of the cancellation protocol (see task_context.hpp): arm on
// suspension, wake with a result, wake with cancelled_error.
#pragma once

#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/task_context.hpp>
#include <offload/errors.hpp>

#include <coroutine>
#include <source_location>

namespace offload::detail {

/// Throws the cancelled_error that answers the requests made of `ctx` (with
/// the message of cancel(message), if one was given). One delivered
/// cancellation answers every request made so far, as in asyncio.
[[noreturn]] inline void throw_cancelled(task_context* ctx) {
    if (!ctx) throw cancelled_error();
    ctx->cancel_pending = false;
    if (!ctx->cancel_message.empty()) throw cancelled_error(ctx->cancel_message);
    throw cancelled_error();
}

/// Usage in await_suspend: `if (!arm(h)) return false;` then link into whatever it waits on.
struct waiter : cancellable {
    loop_core* loop = nullptr;
    task_context* ctx = nullptr;
    std::coroutine_handle<> handle;
    std::source_location where;
    bool cancelled = false;

    explicit waiter(std::source_location loc) noexcept : where(loc) {}

    /// Registers as the task's current waiter. Returns false (do not suspend;
    /// the await will throw) when a cancellation is already pending.
    bool arm(std::coroutine_handle<> h) {
        loop = &loop_core::require_current("this awaitable");
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
        if (cancelled) throw_cancelled(ctx);
    }

protected:
    ~waiter() { disarm(); }
};

} // namespace offload::detail
