// offload/to_thread.hpp — one co_await to move a blocking or CPU-heavy call
// off the loop onto threads: to_thread (the loop's default thread pool,
// asyncio.to_thread) and run_in_executor (a given thread pool). offload()
// (the loop's default executor, thread or process pool) is in
// <offload/default_executor.hpp>. The awaiting coroutine always resumes on its
// own loop thread.
#pragma once

#include <offload/detail/loop/core.hpp>
#include <offload/detail/threads/call_awaiter.hpp>
#include <offload/thread_pool.hpp>

#include <functional>
#include <source_location>
#include <type_traits>
#include <utility>

namespace offload {

namespace detail {
// Where to_thread and offload() find their pool when the call is awaited.
inline thread_pool_core& resolve_default_thread_pool(loop_core& loop) {
    return core_of(default_thread_pool_of(loop));
}
inline thread_pool_core& resolve_default_thread_executor(loop_core& loop) {
    return loop.default_thread_executor ? core_of(*loop.default_thread_executor)
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
        nullptr, &detail::resolve_default_thread_pool, std::source_location::current(), std::forward<F>(fn),
        std::forward<A>(args)...);
}

/// Runs `fn(args...)` on `pool`. Same contract as to_thread; with a bounded
/// pool (max_queued) the await first waits for a queue slot.
template <class F, class... A>
    requires detail::offloadable<F, A...>
[[nodiscard]] auto run_in_executor(thread_pool& pool, F&& fn, A&&... args) {
    return detail::thread_call_awaiter<std::decay_t<F>, std::decay_t<A>...>(
        &detail::core_of(pool), nullptr, std::source_location::current(), std::forward<F>(fn),
        std::forward<A>(args)...);
}

} // namespace offload
