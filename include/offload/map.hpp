// offload/map.hpp — map(executor, fn, range, chunk_size): a parallel map that
// returns results in input order. Each chunk of `chunk_size` items is one
// call on the executor, so the per-call hand-off is paid once per chunk
// (the seeds' main lever against IPC cost on process pools).
#pragma once

#include <offload/gather.hpp>
#include <offload/task.hpp>
#include <offload/thread_pool.hpp>
#include <offload/to_thread.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <iterator>
#include <ranges>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace offload {

namespace detail {
template <class F, class T>
using map_result_t = std::invoke_result_t<const F&, const T&>;

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

template <class F, class T>
task<std::vector<map_result_t<F, T>>> map_chunks(thread_pool& pool, F fn, std::vector<std::vector<T>> chunks) {
    using R = map_result_t<F, T>;
    std::vector<task<std::vector<R>>> calls;
    calls.reserve(chunks.size());
    for (auto& c : chunks)
        calls.push_back([](thread_pool& p, map_chunk<F, T> job, std::vector<T> items) -> task<std::vector<R>> {
            co_return co_await run_in_executor(p, std::move(job), std::move(items));
        }(pool, map_chunk<F, T>{fn}, std::move(c)));
    auto parts = co_await gather(std::move(calls));
    std::vector<R> out;
    std::size_t total = 0;
    for (auto& p : parts) total += p.size();
    out.reserve(total);
    for (auto& p : parts)
        for (auto& r : p) out.push_back(std::move(r));
    co_return out;
}
} // namespace detail

/// Applies `fn` to every element of `range` on `pool`, `chunk_size` elements
/// per call, and returns the results in input order. The elements are copied
/// when map is called, so the range need not outlive the returned task.
///
/// Cancellation and failure: as gather — the first failing chunk cancels the
/// others (queued chunks never run) and its exception is rethrown.
/// Example: `auto lens = co_await map(pool, [](const std::string& s) { return s.size(); }, words, 256);`
template <class F, std::ranges::input_range Range>
    requires std::is_invocable_v<const std::decay_t<F>&, const std::ranges::range_value_t<Range>&> &&
             (!std::is_void_v<std::invoke_result_t<const std::decay_t<F>&, const std::ranges::range_value_t<Range>&>>)
[[nodiscard]] auto map(thread_pool& pool, F&& fn, Range&& range, std::size_t chunk_size = 1) {
    using T = std::ranges::range_value_t<Range>;
    if (chunk_size == 0)
        throw std::invalid_argument("offload::map: chunk_size must be at least 1 (it is the number of items per call)");
    std::vector<std::vector<T>> chunks;
    std::vector<T> cur;
    for (auto&& x : range) {
        cur.push_back(x);
        if (cur.size() == chunk_size) {
            chunks.push_back(std::move(cur));
            cur = {};
        }
    }
    if (!cur.empty()) chunks.push_back(std::move(cur));
    return detail::map_chunks(pool, std::decay_t<F>(std::forward<F>(fn)), std::move(chunks));
}

} // namespace offload
