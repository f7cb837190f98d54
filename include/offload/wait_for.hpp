// offload/wait_for.hpp — wait_for(awaitable, timeout), asyncio.wait_for:
// the awaitable runs as its own task; at the deadline it is cancelled, the
// caller waits for it to unwind, and timeout_error is thrown. A result that
// arrives first wins, even if the deadline passes while it is delivered.
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
    clock::duration timeout;
    bool timed_out = false;

    done_or_timeout_awaiter(task_state_base* s, clock::duration d, std::source_location loc)
        : waiter(loc), st(s), timeout(d) {}
    done_or_timeout_awaiter(const done_or_timeout_awaiter&) = delete;
    done_or_timeout_awaiter& operator=(const done_or_timeout_awaiter&) = delete;
    ~done_or_timeout_awaiter() {
        if (queued()) loop->remove_timer(this);
    }

    bool await_ready() const noexcept { return st->done; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!arm(h)) return false;
        deadline = clock::now() + timeout;
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

} // namespace detail

/// Awaits `aw` (a task<T>, a task_handle<T> or any awaitable) for at most
/// `timeout`. On timeout, cancels it, waits for it to unwind, and throws
/// timeout_error. If `aw` completes first (even by catching the cancellation
/// and returning a value), its result is returned. A zero or negative timeout
/// throws timeout_error without starting a task or awaitable (an already
/// running task_handle is cancelled, unless it has finished: then its result).
///
/// Cancellation: cancelling the caller cancels `aw`, waits for it, and throws cancelled_error.
/// Example: `auto v = co_await wait_for(to_thread(work), 2s);`
template <class A, class Rep, class Period>
    requires detail::gatherable<A>
task<detail::child_value_t<A>> wait_for(A aw, std::chrono::duration<Rep, Period> timeout_d,
                                        std::source_location loc = std::source_location::current()) {
    using T = detail::child_value_t<A>;
    const auto timeout = std::chrono::ceil<detail::clock::duration>(timeout_d);
    if constexpr (!detail::is_task_handle_v<std::remove_cvref_t<A>>) {
        // As asyncio: a non-positive timeout does not start the operation.
        if (timeout <= detail::clock::duration::zero())
            throw timeout_error(fmt::format("offload::timeout_error: wait_for was given a timeout of {:.3f} ms, so "
                                            "the operation was not started; give it a positive timeout",
                                            std::chrono::duration<double, std::milli>(timeout).count()));
    }
    task_handle<T> h = detail::to_handle(std::move(aw));
    detail::task_state_base* st = detail::state_of(h);
    bool cancelled_here = false;
    bool timed_out = false;
    try {
        timed_out = co_await detail::done_or_timeout_awaiter(st, timeout, loc);
    } catch (const cancelled_error&) {
        cancelled_here = true;
    }
    if (cancelled_here || timed_out) {
        if (!st->done) {
            st->request_cancel();
            detail::task_state_base* one[] = {st};
            co_await detail::children_awaiter(one, detail::children_awaiter::mode::all_done, true, loc);
        }
        if (cancelled_here) {
            st->mark_retrieved();
            throw cancelled_error();
        }
        if (st->cancelled()) {
            st->mark_retrieved();
            throw timeout_error(fmt::format(
                "offload::timeout_error: wait_for gave up after {:.3f} ms and cancelled the operation; raise the "
                "timeout, or make the work smaller",
                std::chrono::duration<double, std::milli>(timeout).count()));
        }
    }
    co_return co_await h; // finished: its value, or its own exception
}

} // namespace offload
