// offload/wait.hpp — wait(handles, return_when, timeout), asyncio.wait: wait
// for already-scheduled tasks until the first ends, the first throws, or all
// have ended, and get the handles back split into done and pending. Nothing
// is cancelled and no task's exception is raised: the caller inspects the
// handles. Built on detail/tasks/children_awaiter.hpp.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/tasks/children_awaiter.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <fmt/core.h>

#include <chrono>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <unordered_set>
#include <vector>

namespace offload {

/// When wait() returns (asyncio's FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED).
enum class return_when {
    first_completed, ///< as soon as any task has ended (returned, thrown or been cancelled)
    first_exception, ///< as soon as any task has thrown (a cancellation does not count), else when all ended
    all_completed,   ///< when every task has ended
};

/// What wait() returns: the handles that have ended and those still running,
/// each in the order of the input (duplicates appear once).
/// Example: `auto [done, pending] = co_await wait(handles, return_when::first_completed);`
template <class T>
struct wait_result {
    /// The handles whose tasks have ended (returned, threw or were cancelled).
    std::vector<task_handle<T>> done;
    /// The handles whose tasks are still running (wait() does not cancel them).
    std::vector<task_handle<T>> pending;
};

namespace detail {
template <class T>
task<wait_result<T>> wait_impl(std::vector<task_handle<T>> handles, return_when when,
                               std::optional<clock::duration> timeout, std::source_location loc) {
    if (handles.empty())
        throw std::invalid_argument("offload::wait: the set of task handles is empty, so there is nothing to wait "
                                    "for; pass at least one handle from create_task");
    if (when != return_when::first_completed && when != return_when::first_exception &&
        when != return_when::all_completed)
        throw std::invalid_argument(fmt::format("offload::wait: return_when has the invalid value {}; use "
                                                "return_when::first_completed, first_exception or all_completed",
                                                static_cast<int>(when)));
    // asyncio.wait works on a set: a task given twice is waited for, and returned, once.
    std::vector<task_handle<T>> unique;
    std::vector<task_state_base*> states;
    std::unordered_set<task_state_base*> seen;
    unique.reserve(handles.size());
    states.reserve(handles.size());
    for (auto& h : handles) {
        task_state_base* st = task_handle_access::state(h); // throws on an empty handle
        if (!seen.insert(st).second) continue;
        states.push_back(st);
        unique.push_back(std::move(h));
    }
    const children_awaiter::mode m = when == return_when::first_completed   ? children_awaiter::mode::first_done
                                     : when == return_when::first_exception ? children_awaiter::mode::first_exception
                                                                            : children_awaiter::mode::all_done;
    co_await children_awaiter(states, m, false, loc, timeout);
    wait_result<T> r;
    for (auto& h : unique) (h.done() ? r.done : r.pending).push_back(std::move(h));
    co_return r;
}
} // namespace detail

/// Waits for the tasks behind `handles` until the condition `when` holds, and
/// returns them split into done and pending (asyncio.wait). It cancels nothing
/// and raises none of the tasks' exceptions: read them from the done handles
/// (`result()`, `exception()`, `cancelled()`). A handle given twice counts once.
/// Throws std::invalid_argument (when awaited) if `handles` is empty or `when` is
/// not one of the three values, and
/// std::logic_error if one is an empty handle.
///
/// Thread safety: call and await it on the loop's thread that runs the tasks.
/// Cancellation: cancelling the waiting task makes the await throw
/// cancelled_error and leaves every task running (asyncio.wait does not
/// cancel the futures either); keep the handles to cancel or await them.
/// Example:
/// ```
/// auto [done, pending] = co_await wait(handles, return_when::first_completed);
/// for (auto& h : pending) h.cancel();
/// ```
template <class T>
task<wait_result<T>> wait(std::vector<task_handle<T>> handles, return_when when = return_when::all_completed,
                          std::source_location loc = std::source_location::current()) {
    return detail::wait_impl(std::move(handles), when, std::nullopt, loc);
}

/// As wait(handles, when), but returns at the latest after `timeout` with
/// whatever is done by then (no timeout_error, as asyncio.wait's `timeout`).
/// A zero or negative timeout lets the loop run once and then returns.
/// Example: `auto r = co_await wait(handles, return_when::all_completed, 2s);`
template <class T, class Rep, class Period>
task<wait_result<T>> wait(std::vector<task_handle<T>> handles, return_when when,
                          std::chrono::duration<Rep, Period> timeout,
                          std::source_location loc = std::source_location::current()) {
    return detail::wait_impl(std::move(handles), when, std::chrono::ceil<detail::clock::duration>(timeout), loc);
}

/// As wait(handles, return_when::all_completed, timeout).
template <class T, class Rep, class Period>
task<wait_result<T>> wait(std::vector<task_handle<T>> handles, std::chrono::duration<Rep, Period> timeout,
                          std::source_location loc = std::source_location::current()) {
    return detail::wait_impl(std::move(handles), return_when::all_completed,
                             std::chrono::ceil<detail::clock::duration>(timeout), loc);
}

} // namespace offload
