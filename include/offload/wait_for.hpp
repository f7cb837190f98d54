// offload/wait_for.hpp — wait_for(awaitable, timeout), asyncio.wait_for, and
// wait_until(awaitable, deadline): the awaitable runs as its own task; at the
// deadline it is cancelled, the caller waits for it to unwind, and
// timeout_error is thrown. A result that arrives first wins, even if the
// deadline passes while it is delivered. When the caller itself is cancelled
// at the same time (an outer timeout on the same deadline), the caller gets
// cancelled_error, not timeout_error: only the outermost timeout reports the
// timeout, and no cancellation is ever dropped.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/timer_heap.hpp>
#include <offload/detail/loop/waiter.hpp>
#include <offload/detail/tasks/awaitable_traits.hpp>
#include <offload/detail/tasks/children_awaiter.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/errors.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <fmt/core.h>

#include <chrono>
#include <source_location>

namespace offload {

namespace detail {
// Resumes when the task ends (returns false) or the deadline passes (true).
struct done_or_timeout_awaiter final : waiter, done_listener, timer_node {
    task_state_base* st;
    bool timed_out = false;

    done_or_timeout_awaiter(task_state_base* s, clock::time_point when, std::source_location loc) : waiter(loc), st(s) {
        deadline = when;
    }
    done_or_timeout_awaiter(const done_or_timeout_awaiter&) = delete;
    done_or_timeout_awaiter& operator=(const done_or_timeout_awaiter&) = delete;
    ~done_or_timeout_awaiter() {
        if (queued()) loop->remove_timer(this);
    }

    bool await_ready() const noexcept { return st->done; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!arm(h)) return false;
        loop->add_timer(this);
        st->add_listener(this);
        return true;
    }
    bool await_resume() const {
        throw_if_cancelled();
        return timed_out;
    }

    void on_done() noexcept override {
        loop->remove_timer(this);
        wake();
    }
    void fire() override {
        timed_out = true;
        intrusive_list<done_listener>::erase(this);
        wake();
    }
    void cancel() noexcept override {
        loop->remove_timer(this);
        intrusive_list<done_listener>::erase(this);
        wake_cancelled();
    }
};

/// A limit given as a timeout (counted from the first await) or a deadline.
struct time_limit {
    bool relative;
    clock::duration timeout;
    clock::time_point at;

    clock::time_point deadline() const noexcept {
        if (!relative) return at;
        const auto now = clock::now();
        if (timeout <= clock::duration::zero()) return now;
        // A huge timeout means "no limit": saturate instead of overflowing.
        return timeout > clock::time_point::max() - now ? clock::time_point::max() : now + timeout;
    }
    std::string describe() const {
        if (!relative) return "its deadline";
        return fmt::format("its timeout of {:.3f} ms", std::chrono::duration<double, std::milli>(timeout).count());
    }
};

/// The engine of wait_for and wait_until.
template <class A>
task<child_value_t<A>> wait_until_impl(A aw, time_limit limit, std::source_location loc) {
    using T = child_value_t<A>;
    const clock::time_point deadline = limit.deadline();
    if constexpr (!is_task_handle_v<std::remove_cvref_t<A>>) {
        // As asyncio: a deadline already passed does not start the operation.
        if (deadline <= clock::now())
            throw timeout_error(fmt::format("offload::timeout_error: {} had already passed, so the operation was "
                                            "not started; give it a deadline in the future",
                                            limit.describe()));
    }
    task_handle<T> h = to_handle(std::move(aw));
    task_state_base* st = state_of(h);
    bool cancelled_here = false;
    bool timed_out = false;
    try {
        timed_out = co_await done_or_timeout_awaiter(st, deadline, loc);
    } catch (const cancelled_error&) {
        cancelled_here = true;
    }
    if (cancelled_here || timed_out) {
        if (!st->done) {
            st->request_cancel();
            task_state_base* one[] = {st};
            co_await children_awaiter(one, children_awaiter::mode::all_done, true, loc);
        }
        // Our own task was cancelled too (while we waited, or while our
        // timeout was being handled): that request wins over our timeout, so
        // an outer timeout on the same deadline is the one that reports it.
        task_context* self = tls.ctx;
        if (cancelled_here || (self && self->cancel_pending)) {
            st->mark_retrieved();
            throw_cancelled(self);
        }
        if (st->cancelled()) {
            st->mark_retrieved();
            throw timeout_error(fmt::format("offload::timeout_error: wait_for gave up: {} passed and the "
                                            "operation was cancelled; allow more time, or make the work smaller",
                                            limit.describe()));
        }
    }
    co_return co_await h; // finished: its value, or its own exception
}

} // namespace detail

/// Awaits `aw` (a task<T>, a task_handle<T> or any awaitable) for at most
/// `timeout`. On timeout, cancels it, waits for it to unwind, and throws
/// timeout_error. If `aw` completes first (even by catching the cancellation
/// and returning a value), its result is returned. A zero or negative timeout
/// throws timeout_error without starting a task or awaitable (an already
/// running task_handle is cancelled, unless it has finished: then its result).
///
/// Cancellation: cancelling the caller cancels `aw`, waits for it, and throws
/// cancelled_error — also when the cancellation arrives together with the
/// timeout (nested timeouts on one deadline: the outer one reports it).
/// Example: `auto v = co_await wait_for(to_thread(work), 2s);`
template <class A, class Rep, class Period>
    requires detail::gatherable<A>
task<detail::child_value_t<A>> wait_for(A aw, std::chrono::duration<Rep, Period> timeout,
                                        std::source_location loc = std::source_location::current()) {
    const detail::time_limit limit{true, std::chrono::ceil<detail::clock::duration>(timeout), {}};
    return detail::wait_until_impl(std::move(aw), limit, loc);
}

/// Awaits `aw` until the steady-clock time `deadline` (asyncio's
/// timeout_at applied to one operation); otherwise exactly like wait_for. A
/// deadline that already passed throws timeout_error without starting `aw`.
/// Example: `auto v = co_await wait_until(fetch(), std::chrono::steady_clock::now() + 2s);`
template <class A, class Duration>
    requires detail::gatherable<A>
task<detail::child_value_t<A>> wait_until(A aw, std::chrono::time_point<std::chrono::steady_clock, Duration> deadline,
                                          std::source_location loc = std::source_location::current()) {
    const detail::time_limit limit{false, {}, std::chrono::time_point_cast<detail::clock::duration>(deadline)};
    return detail::wait_until_impl(std::move(aw), limit, loc);
}

} // namespace offload
