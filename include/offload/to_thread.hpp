// offload/to_thread.hpp — one co_await to move a blocking or CPU-heavy call
// off the loop onto threads: to_thread (the loop's default thread pool,
// asyncio.to_thread) and run_in_executor (a given thread pool, or an
// executor of your own). offload() (the loop's default executor, thread or
// process pool) is in <offload/default_executor.hpp>. The awaiting coroutine
// always resumes on its own loop thread.
#pragma once

#include <offload/detail/loop/core.hpp>
#include <offload/detail/threads/call_awaiter.hpp>
#include <offload/detail/threads/call_batch.hpp>
#include <offload/future.hpp>
#include <offload/gather.hpp>
#include <offload/outcome.hpp>
#include <offload/task.hpp>
#include <offload/thread_pool.hpp>

#include <exception>
#include <functional>
#include <source_location>
#include <type_traits>
#include <utility>
#include <vector>

namespace offload {

namespace detail {
// Where to_thread and offload() find their pool when the call is awaited.
inline call_queue resolve_default_thread_pool(loop_core& loop) {
    return queue_of(core_of(default_thread_pool_of(loop)));
}
inline call_queue resolve_default_thread_executor(loop_core& loop) {
    return loop.default_thread_executor ? queue_of(core_of(*loop.default_thread_executor))
                                        : resolve_default_thread_pool(loop);
}
} // namespace detail

/// Runs `fn(args...)` on the current loop's default thread pool and resumes
/// with its result (or rethrows its exception, with its type).
///
/// Arguments are decay-copied like std::thread's (use std::ref to pass a
/// reference); move-only arguments and results work. A callable whose first
/// parameter is std::stop_token receives one that cancellation requests.
/// Cancellation: a call still queued never runs; a running one is asked to
/// stop (stop_token) and the await throws cancelled_error at once.
/// Example: `auto digest = co_await offload::to_thread(sha256, std::move(data));`
template <class F, class... A>
    requires detail::offloadable<F, A...>
[[nodiscard]] auto to_thread(F&& fn, A&&... args) {
    return detail::thread_call_awaiter<std::decay_t<F>, std::decay_t<A>...>(
        detail::call_queue{}, &detail::resolve_default_thread_pool, std::source_location::current(),
        std::forward<F>(fn), std::forward<A>(args)...);
}

/// Runs `fn(args...)` on `pool`. Same contract as to_thread; with a bounded
/// pool (max_queued) the await first waits for a queue slot.
template <class F, class... A>
    requires detail::offloadable<F, A...>
[[nodiscard]] auto run_in_executor(thread_pool& pool, F&& fn, A&&... args) {
    return detail::thread_call_awaiter<std::decay_t<F>, std::decay_t<A>...>(detail::queue_of(detail::core_of(pool)),
                                                                            nullptr, std::source_location::current(),
                                                                            std::forward<F>(fn),
                                                                            std::forward<A>(args)...);
}

/// Hands `fn(args...)` to `pool` now and returns the future of its result:
/// the eager twin of run_in_executor (asyncio's loop.run_in_executor, which
/// returns an already scheduled future). The call is queued before submit
/// returns, so it runs while the caller goes on; `co_await` the future for
/// the value (or the exception, with its type).
///
/// Discarding the future is fire-and-forget: the call still runs, and an
/// exception nobody retrieved goes to the loop's exception handler.
/// Cancellation: future::cancel() drops a call still queued (it never runs);
/// a running one is asked to stop (stop_token) and its result discarded.
/// Cancelling a task that awaits the future cancels the future (asyncio).
/// A call the pool drops at shutdown(…, cancel_pending) fails the future
/// with executor_closed; submit on a pool already shut down throws it.
/// Submit never suspends: with a bounded pool (max_queued) a call waits for
/// a queue slot on its own, so backpressure needs the lazy run_in_executor.
/// Example: `auto f = submit(pool, parse, path); co_await other(); auto doc = co_await f;`
template <class F, class... A>
    requires detail::offloadable<F, A...>
auto submit(thread_pool& pool, F&& fn, A&&... args) {
    auto call = run_in_executor(pool, std::forward<F>(fn), std::forward<A>(args)...); // the lazy awaitable
    return detail::start_future<typename decltype(call)::result_type>(std::move(call));
}

/// Runs `fn(args...)` on an executor of your own (see the `executor` concept:
/// it receives the call as an executor_work and runs it on one of its
/// threads). Same contract as to_thread; a call cancelled while it waits in
/// your executor's queue does nothing when run, and one your executor drops
/// unrun (destroys its executor_work) resolves with executor_closed.
/// Example: `int v = co_await offload::run_in_executor(my_executor, compute, 42);`
template <class E, class F, class... A>
    requires detail::user_executor<E> && detail::offloadable<F, A...>
[[nodiscard]] auto run_in_executor(E& executor, F&& fn, A&&... args) {
    return detail::thread_call_awaiter<std::decay_t<F>, std::decay_t<A>...>(detail::queue_of_user_executor(executor),
                                                                            nullptr, std::source_location::current(),
                                                                            std::forward<F>(fn),
                                                                            std::forward<A>(args)...);
}

/// Hands `fn(args...)` to an executor of your own now (its execute() is
/// called before submit returns) and returns the future of its result. Same
/// contract as submit on a thread_pool; a call cancelled while it waits in
/// your executor's queue does nothing when run, and one your executor drops
/// unrun fails the future with executor_closed.
template <class E, class F, class... A>
    requires detail::user_executor<E> && detail::offloadable<F, A...>
auto submit(E& executor, F&& fn, A&&... args) {
    auto call = run_in_executor(executor, std::forward<F>(fn), std::forward<A>(args)...); // the lazy awaitable
    return detail::start_future<typename decltype(call)::result_type>(std::move(call));
}

/// Anything else is not an executor: a compile-time error that says what is.
template <class E, class F, class... A>
    requires(!executor<E>)
void run_in_executor(E&, F&&, A&&...) {
    static_assert(detail::always_false_v<E>,
                  "offload::run_in_executor: the first argument is not an executor. Pass a thread_pool, a "
                  "process_pool (include <offload/process_pool.hpp>), or a type of yours with "
                  "`executor_stats stats() const`, `void shutdown(bool wait, bool cancel_pending)` and "
                  "`void execute(offload::executor_work)` (see the offload::executor concept)");
}

/// Anything else is not an executor (see run_in_executor).
template <class E, class F, class... A>
    requires(!executor<E>)
void submit(E&, F&&, A&&...) {
    static_assert(detail::always_false_v<E>,
                  "offload::submit: the first argument is not an executor. Pass a thread_pool, a process_pool "
                  "(include <offload/process_pool.hpp>), or a type of yours modelling the offload::executor concept");
}

/// The awaitable that to_thread and run_in_executor (on a thread_pool or an
/// executor of yours) return for `fn(args...)`; name it to build a vector of
/// calls for gather: `std::vector<offload::thread_call<decltype(&f)>> calls;`.
template <class F, class... A>
using thread_call = detail::thread_call_awaiter<std::decay_t<F>, std::decay_t<A>...>;

/// Runs every call of `calls` (to_thread or run_in_executor awaitables, none
/// awaited yet) concurrently and returns their results in order (`void`
/// results are std::monostate): gather's contract for a vector of tasks, at a
/// fraction of the cost: no task, coroutine frame or allocation per call, and
/// the calls are queued with one worker wake-up per pool.
///
/// A failing call (its exception, or executor_closed for a call shutdown
/// dropped) withdraws the others: queued ones never run, running ones are
/// asked to stop (std::stop_token) and their results discarded; then its
/// exception is rethrown.
/// Cancellation: cancelling the gather withdraws every call the same way and
/// throws cancelled_error at once (a worker may still be finishing a call
/// that ignores its stop_token; the call's state outlives the gather safely).
/// Thread safety: build, call and await it on the loop's thread.
/// Example:
/// ```
/// std::vector<offload::thread_call<decltype(&checksum), std::string>> calls;
/// for (auto& path : paths) calls.push_back(offload::run_in_executor(pool, &checksum, path));
/// std::vector<std::uint32_t> sums = co_await offload::gather(std::move(calls));
/// ```
template <class F, class... A>
task<std::vector<detail::value_or_monostate_t<detail::call_result_t<F, A...>>>> gather(
    std::vector<detail::thread_call_awaiter<F, A...>> calls) {
    detail::call_batch_awaiter<F, A...> batch(calls, false, std::source_location::current());
    co_await batch;
    co_return batch.values();
}

/// Runs every call of `calls` concurrently, like gather(calls), but a failing
/// call withdraws nobody: each gives an outcome (its value, or the exception
/// it threw; executor_closed for a call shutdown dropped), in order.
/// Cancellation: cancelling the gather withdraws every call and throws cancelled_error.
/// Thread safety: build, call and await it on the loop's thread.
/// Example: `for (auto& o : co_await gather(return_exceptions, std::move(calls))) if (o) use(o.value());`
template <class F, class... A>
task<std::vector<outcome<detail::value_or_monostate_t<detail::call_result_t<F, A...>>>>> gather(
    return_exceptions_t, std::vector<detail::thread_call_awaiter<F, A...>> calls) {
    using V = detail::value_or_monostate_t<detail::call_result_t<F, A...>>;
    detail::call_batch_awaiter<F, A...> batch(calls, true, std::source_location::current());
    co_await batch;
    std::vector<outcome<V>> out;
    out.reserve(calls.size());
    batch.outcomes([&out](auto&& v) {
        if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::exception_ptr>)
            out.push_back(outcome<V>(std::move(v)));
        else
            out.push_back(outcome<V>(std::in_place, std::move(v)));
    });
    co_return out;
}

} // namespace offload
