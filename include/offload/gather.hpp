// offload/gather.hpp — gather: run awaitables concurrently, collect results
// in argument order. Unlike asyncio.gather, the first failure cancels the
// others and waits for them to unwind before it is rethrown: no child ever
// outlives the gather (structured, like a TaskGroup).
#pragma once

#include <offload/detail/awaitable_traits.hpp>
#include <offload/detail/child_watch.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <array>
#include <source_location>
#include <tuple>
#include <utility>
#include <vector>

namespace offload {

namespace detail {
// Waits for `children`; on the first failure, or on cancellation of the
// caller, cancels the others, waits for all to end, then rethrows.
inline task<> gather_children(std::vector<task_state_base*> children, std::source_location loc) {
    bool cancelled_here = false;
    task_state_base* failed = nullptr;
    {
        child_watch w(children, child_watch::mode::first_failure, false, loc);
        try {
            co_await w;
            failed = w.first_failure();
        } catch (const cancelled_error&) {
            cancelled_here = true;
        }
    }
    if (!cancelled_here && !failed) co_return;
    for (task_state_base* c : children)
        if (!c->done) c->request_cancel();
    co_await child_watch(children, child_watch::mode::all_done, true, loc);
    if (cancelled_here) throw cancelled_error();
    failed->rethrow_if_failed();
}
} // namespace detail

/// Runs every argument concurrently (each task<T>, task_handle<T> or other
/// awaitable becomes its own scheduled task) and returns their results as a
/// tuple, in argument order; `void` results are std::monostate.
///
/// Cancellation: cancelling the gather cancels every child and waits for them.
/// A failing child cancels the rest; the first failure is rethrown once all ended.
/// Example: `auto [a, b] = co_await gather(fetch(1), fetch(2));`
template <class... A>
    requires(sizeof...(A) > 0 && (detail::gatherable<A> && ...))
task<std::tuple<detail::value_or_monostate_t<detail::child_value_t<A>>...>> gather(A... aws) {
    auto handles = std::make_tuple(detail::to_handle(std::move(aws))...);
    std::vector<detail::task_state_base*> states =
        std::apply([](auto&... h) { return std::vector<detail::task_state_base*>{h.state()...}; }, handles);
    co_await detail::gather_children(std::move(states), std::source_location::current());
    co_return std::apply([](auto&... h) { return std::make_tuple(detail::take_result(h)...); }, handles);
}

/// Runs every task of `tasks` concurrently and returns their results in order
/// (`void` results are std::monostate). Same failure and cancellation rules.
template <class T>
task<std::vector<detail::value_or_monostate_t<T>>> gather(std::vector<task<T>> tasks) {
    std::vector<task_handle<T>> handles;
    handles.reserve(tasks.size());
    for (auto& t : tasks) handles.push_back(create_task(std::move(t)));
    std::vector<detail::task_state_base*> states;
    states.reserve(handles.size());
    for (auto& h : handles) states.push_back(h.state());
    co_await detail::gather_children(std::move(states), std::source_location::current());
    std::vector<detail::value_or_monostate_t<T>> out;
    out.reserve(handles.size());
    for (auto& h : handles) out.push_back(detail::take_result(h));
    co_return out;
}

} // namespace offload
