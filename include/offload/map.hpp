// offload/map.hpp — map(executor, fn, range, chunk_size): a parallel map that
// returns results in input order. Each chunk of `chunk_size` items is one
// call on the executor, so the per-call hand-off is paid once per chunk
// (the seeds' main lever against IPC cost). This header has map for thread
// pools and executors of your own; map for a process pool is in
// <offload/process_pool.hpp>.
#pragma once

#include <offload/detail/tasks/chunks.hpp>
#include <offload/detail/tasks/run_all.hpp>
#include <offload/task.hpp>
#include <offload/thread_pool.hpp>
#include <offload/to_thread.hpp>

#include <concepts>
#include <cstddef>
#include <source_location>
#include <type_traits>
#include <utility>
#include <vector>

namespace offload {

namespace detail {
template <class F, class T>
using map_result_t = std::invoke_result_t<const F&, const T&>;

// One call: fn over one chunk.
template <class F, class T>
struct map_chunk {
    F fn;
    std::vector<map_result_t<F, T>> operator()(std::vector<T> items) const {
        std::vector<map_result_t<F, T>> out;
        out.reserve(items.size());
        for (const T& x : items) out.push_back(fn(x));
        return out;
    }
};

template <class Executor, class F, class T>
task<std::vector<map_result_t<F, T>>> map_chunks(Executor& ex, F fn, std::vector<std::vector<T>> chunks) {
    using R = map_result_t<F, T>;
    std::vector<task<std::vector<R>>> calls;
    calls.reserve(chunks.size());
    for (auto& c : chunks)
        calls.push_back([](Executor& e, map_chunk<F, T> job, std::vector<T> items) -> task<std::vector<R>> {
            co_return co_await run_in_executor(e, std::move(job), std::move(items));
        }(ex, map_chunk<F, T>{fn}, std::move(c)));
    co_return concat_chunks(co_await run_all(std::move(calls), std::source_location::current()));
}
} // namespace detail

/// Applies `fn` to every element of `range` on `executor` (a thread_pool or an
/// executor of your own), `chunk_size` elements per call, and returns the
/// results in input order. The elements are copied
/// when map is called, so the range need not outlive the returned task.
///
/// Cancellation and failure: as gather — the first failing chunk cancels the
/// others (queued chunks never run) and its exception is rethrown.
/// Example: `auto lens = co_await map(pool, [](const std::string& s) { return s.size(); }, words, 256);`
template <class E, class F, detail::input_range Range>
    requires(std::same_as<E, thread_pool> || detail::user_executor<E>) &&
            std::is_invocable_v<const std::decay_t<F>&, const detail::range_value_t<Range>&> &&
            (!std::is_void_v<std::invoke_result_t<const std::decay_t<F>&, const detail::range_value_t<Range>&>>)
[[nodiscard]] auto map(E& executor, F&& fn, Range&& range, std::size_t chunk_size = 1) {
    using T = detail::range_value_t<Range>;
    auto chunks = detail::split_chunks<T>(std::forward<Range>(range), chunk_size);
    return detail::map_chunks(executor, std::decay_t<F>(std::forward<F>(fn)), std::move(chunks));
}

} // namespace offload
