// offload/gather.hpp — gather: run awaitables concurrently, collect results
// in argument order. Unlike asyncio.gather, the first failure cancels the
// others and waits for them to unwind before it is rethrown: no child ever
// outlives the gather (structured, like a TaskGroup). With the
// return_exceptions tag it behaves like asyncio.gather(return_exceptions=True):
// every child runs to its end and each gives an outcome<T>. The engine is
// detail/tasks/run_all.hpp. A vector of thread calls (to_thread,
// run_in_executor) has its own, cheaper gather in <offload/to_thread.hpp>:
// no task per call.
#pragma once

#include <offload/detail/tasks/awaitable_traits.hpp>
#include <offload/detail/tasks/run_all.hpp>
#include <offload/errors.hpp>
#include <offload/outcome.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <exception>
#include <source_location>
#include <tuple>
#include <type_traits>
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

/// The type of the return_exceptions tag.
struct return_exceptions_t {
    explicit return_exceptions_t() = default;
};
/// Tag that selects the gather which collects every child's outcome instead of
/// failing fast: `gather(return_exceptions, a, b)`.
inline constexpr return_exceptions_t return_exceptions{};

namespace detail {
// A finished child's result as an outcome; its exception counts as retrieved.
template <class T>
outcome<value_or_monostate_t<T>> settle(task_state<T>* st) {
    using V = value_or_monostate_t<T>;
    if (st->exception()) {
        st->mark_retrieved();
        return outcome<V>(st->exception());
    }
    if (st->cancelled()) // torn down by its loop before it could end (no exception recorded)
        return outcome<V>(std::make_exception_ptr(cancelled_error()));
    if constexpr (std::is_void_v<T>)
        return outcome<V>(std::in_place);
    else
        return outcome<V>(std::in_place, st->result());
}
} // namespace detail

/// Runs every argument concurrently, like gather, but a failing child cancels
/// nobody: every child runs to its end, and each gives an outcome<T> (its value,
/// or the exception it ended with) in a tuple in argument order. A `void` child
/// gives outcome<std::monostate>; a child that was cancelled (by its handle's
/// cancel()) gives an outcome whose error is a cancelled_error, as asyncio's
/// gather(return_exceptions=True) returns the CancelledError. The exceptions
/// count as retrieved: the loop does not report them as unobserved.
///
/// Thread safety: call and await it on the loop's thread.
/// Cancellation: cancelling the gather cancels every child, waits for them to
/// end, and throws cancelled_error (the children's outcomes are dropped).
/// Example:
/// ```
/// auto [a, b] = co_await gather(return_exceptions, fetch(1), fetch(2));
/// if (!b.has_value()) log(b.error());
/// ```
template <class... A>
    requires(sizeof...(A) > 0 && (detail::gatherable<A> && ...))
task<std::tuple<outcome<detail::value_or_monostate_t<detail::child_value_t<A>>>...>> gather(return_exceptions_t,
                                                                                            A... aws) {
    auto handles = std::make_tuple(detail::to_handle(std::move(aws))...);
    std::vector<detail::task_state_base*> states =
        std::apply([](auto&... h) { return std::vector<detail::task_state_base*>{detail::state_of(h)...}; }, handles);
    try {
        co_await detail::gather_children(states, std::source_location::current(), detail::on_child_failure::keep_going);
    } catch (const cancelled_error&) {
        for (detail::task_state_base* st : states) st->mark_retrieved();
        throw;
    }
    co_return std::apply(
        [](auto&... h) { return std::make_tuple(detail::settle(detail::task_handle_access::state(h))...); }, handles);
}

/// Runs every task of `tasks` concurrently and returns their outcomes in order,
/// with the rules of gather(return_exceptions, awaitables...).
/// Example: `for (auto& o : co_await gather(return_exceptions, std::move(jobs))) if (o) use(o.value());`
template <class T>
task<std::vector<outcome<detail::value_or_monostate_t<T>>>> gather(return_exceptions_t, std::vector<task<T>> tasks) {
    auto refs = detail::spawn_all(std::move(tasks), "gather");
    auto states = detail::states_of(refs);
    try {
        co_await detail::gather_children(states, std::source_location::current(), detail::on_child_failure::keep_going);
    } catch (const cancelled_error&) {
        for (detail::task_state_base* st : states) st->mark_retrieved();
        throw;
    }
    std::vector<outcome<detail::value_or_monostate_t<T>>> out;
    out.reserve(refs.size());
    for (auto& r : refs) out.push_back(detail::settle(r.get()));
    co_return out;
}

} // namespace offload
