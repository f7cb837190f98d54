// offload/detail/awaitable_traits.hpp — what `co_await x` yields for any
// awaitable x, and how to turn any awaitable into a scheduled task (gather and
// wait_for accept tasks, task handles and plain awaitables alike).
#pragma once

#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <type_traits>
#include <utility>
#include <variant>

namespace offload::detail {

template <class A>
decltype(auto) get_awaiter(A&& a) {
    if constexpr (requires { std::forward<A>(a).operator co_await(); })
        return std::forward<A>(a).operator co_await();
    else if constexpr (requires { operator co_await(std::forward<A>(a)); })
        return operator co_await(std::forward<A>(a));
    else
        return std::forward<A>(a);
}

template <class A>
using await_result_t = decltype(get_awaiter(std::declval<A>()).await_resume());

template <class A>
concept awaitable = requires(A&& a) { get_awaiter(std::forward<A>(a)).await_ready(); };

template <class A>
task<await_result_t<A>> as_task(A a) {
    co_return co_await std::move(a);
}

template <class>
inline constexpr bool is_task_handle_v = false;
template <class T>
inline constexpr bool is_task_handle_v<task_handle<T>> = true;

/// What gather and wait_for accept: a task, a task handle or any awaitable.
template <class A>
concept gatherable = is_task_v<std::remove_cvref_t<A>> || is_task_handle_v<std::remove_cvref_t<A>> || awaitable<A>;

/// The value type an argument of gather/wait_for produces.
template <class A>
struct child_value {}; // not awaitable: no type (keeps overload resolution SFINAE-friendly)
template <class A>
    requires awaitable<A>
struct child_value<A> {
    using type = await_result_t<A>;
};
template <class T>
struct child_value<task<T>> {
    using type = T;
};
template <class T>
struct child_value<task_handle<T>> {
    using type = T;
};
template <class A>
using child_value_t = typename child_value<std::remove_cvref_t<A>>::type;

/// Schedules an argument of gather/wait_for as its own task (a handle passes through).
template <class A>
auto to_handle(A&& a) {
    using D = std::remove_cvref_t<A>;
    if constexpr (is_task_handle_v<D>)
        return D(std::forward<A>(a));
    else if constexpr (is_task_v<D>)
        return create_task(D(std::forward<A>(a)));
    else
        return create_task(as_task(D(std::forward<A>(a))));
}

/// `void` results become std::monostate inside tuples and vectors.
template <class T>
using value_or_monostate_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
value_or_monostate_t<T> take_result(const task_handle<T>& h) {
    if constexpr (std::is_void_v<T>) {
        h.result();
        return {};
    } else {
        return h.result();
    }
}

} // namespace offload::detail
