// offload/detail/tasks/awaitable_traits.hpp — what `co_await x` yields for
// any awaitable x, and the coroutine that turns an awaitable into a task.
#pragma once

#include <offload/detail/base/type_traits.hpp>
#include <offload/task.hpp>

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

} // namespace offload::detail
