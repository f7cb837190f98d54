// offload/default_executor.hpp — offload(fn, args...): run a call on the
// loop's default executor, whichever kind set_default_executor chose: a thread
// pool (the default thread pool unless changed) or a process pool, as asyncio's
// loop.run_in_executor(None, ...) runs on whatever set_default_executor set.
// The choice is read when the call is awaited, on the loop that awaits it.
#pragma once

#include <offload/detail/loop/core.hpp>
#include <offload/detail/process/call_awaiter.hpp>
#include <offload/detail/threads/call_awaiter.hpp>
#include <offload/process_pool.hpp>
#include <offload/serialize.hpp>
#include <offload/to_thread.hpp>

#include <coroutine>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace offload {
namespace detail {

/// Why fn(args...) cannot run in a worker process, or nullptr if it can.
template <class F, class... A>
constexpr const char* process_refusal() {
    if constexpr (!process_callable_v<F>)
        return "the callable is not a function pointer or a captureless lambda (captured state cannot cross the "
               "process boundary)";
    else if constexpr (takes_stop_token_v<F, A...>)
        return "the callable takes a std::stop_token, which only a thread can be given";
    else if constexpr (!(serializable<A> && ...))
        return "an argument type is not serializable";
    else if constexpr (!(std::is_void_v<std::invoke_result_t<F, A...>> || serializable<std::invoke_result_t<F, A...>>))
        return "the result type is not serializable";
    else
        return nullptr;
}

template <class F, class... A>
inline constexpr bool process_eligible_v = process_refusal<F, A...>() == nullptr;

/// The awaiter of offload(): holds the callable and its arguments until it is
/// awaited, then becomes a thread-pool or a process-pool call.
template <class F, class... A>
class default_call_awaiter {
    using thread_call = thread_call_awaiter<F, A...>;
    struct no_process_call {};
    using process_call =
        std::conditional_t<process_eligible_v<F, A...>, process_call_awaiter<F, A...>, no_process_call>;

public:
    using result_type = call_result_t<F, A...>;

    template <class G, class... B>
    explicit default_call_awaiter(std::source_location loc, G&& fn, B&&... args)
        : where_(loc), parts_(std::in_place, std::forward<G>(fn), std::forward<B>(args)...) {}
    // Movable until awaited (so gather and wait_for can take it).
    default_call_awaiter(default_call_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<std::tuple<F, A...>>)
        : where_(o.where_), parts_(std::move(o.parts_)) {
        o.parts_.reset();
    }
    default_call_awaiter& operator=(const default_call_awaiter&) = delete;

    bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> h) {
        if (!parts_) throw std::logic_error("offload: an offloaded call can be awaited once");
        loop_core& loop = loop_core::require_current("offload::offload");
        std::tuple<F, A...> parts = std::move(*parts_);
        parts_.reset();
        if (process_pool* pool = loop.default_process_executor) {
            if constexpr (process_eligible_v<F, A...>)
                return start<process_call>(h, parts, core_of(*pool));
            else
                throw std::logic_error(std::string("offload::offload: the loop's default executor is a "
                                                   "process_pool, and this call cannot run in a worker process: ") +
                                       process_refusal<F, A...>() +
                                       ". Run it on a thread with offload::to_thread(...), or pass a function "
                                       "pointer with serializable arguments and result");
        }
        return start<thread_call>(h, parts, call_queue{}, &resolve_default_thread_executor);
    }

    result_type await_resume() {
        if constexpr (process_eligible_v<F, A...>)
            if (auto* p = std::get_if<process_call>(&call_)) return p->await_resume();
        return std::get<thread_call>(call_).await_resume();
    }

private:
    // Builds the call in place from `head...`, the location, the callable and
    // the arguments, and suspends on it.
    template <class Call, class... Head>
    bool start(std::coroutine_handle<> h, std::tuple<F, A...>& parts, Head&&... head) {
        auto& call = std::apply(
            [&](F& fn, A&... args) -> Call& {
                return call_.template emplace<Call>(std::forward<Head>(head)..., where_, std::move(fn),
                                                    std::move(args)...);
            },
            parts);
        return call.await_suspend(h);
    }

    std::source_location where_;
    std::optional<std::tuple<F, A...>> parts_;
    std::variant<std::monostate, thread_call, process_call> call_;
};

} // namespace detail

/// Runs `fn(args...)` on the loop's default executor and resumes with its
/// result (or rethrows its exception). By default that is the default thread
/// pool, with to_thread's contract; after set_default_executor(a_thread_pool)
/// that pool; after set_default_executor(a_process_pool) a worker process of
/// that pool, with run_in_executor(process_pool&)'s contract: a callable or
/// argument that cannot cross the process boundary then makes the await throw
/// std::logic_error that says why (it compiles, because the default executor
/// is only known when the call is awaited).
/// Example: `loop.set_default_executor(procs); int n = co_await offload::offload(count_primes, 100000);`
template <class F, class... A>
    requires detail::offloadable<F, A...>
[[nodiscard]] auto offload(F&& fn, A&&... args) {
    return detail::default_call_awaiter<std::decay_t<F>, std::decay_t<A>...>(
        std::source_location::current(), std::forward<F>(fn), std::forward<A>(args)...);
}

} // namespace offload
