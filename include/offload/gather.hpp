// offload/gather.hpp — gather: run awaitables concurrently, collect results
// in argument order. Unlike asyncio.gather, the first failure cancels the
// others and waits for them to unwind before it is rethrown: no child ever
// outlives the gather (structured, like a TaskGroup). The engine is
// detail/tasks/run_all.hpp.
#pragma once

#include <offload/detail/tasks/awaitable_traits.hpp>
#include <offload/detail/tasks/run_all.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <array>
#include <source_location>
#include <tuple>
#include <utility>
#include <vector>

namespace offload {

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
        std::apply([](auto&... h) { return std::vector<detail::task_state_base*>{detail::state_of(h)...}; }, handles);
    co_await detail::gather_children(std::move(states), std::source_location::current());
    co_return std::apply([](auto&... h) { return std::make_tuple(detail::take_result(h)...); }, handles);
}

/// Runs every task of `tasks` concurrently and returns their results in order
/// (`void` results are std::monostate). Same failure and cancellation rules.
template <class T>
task<std::vector<detail::value_or_monostate_t<T>>> gather(std::vector<task<T>> tasks) {
    return detail::run_all(std::move(tasks), std::source_location::current());
}

} // namespace offload
