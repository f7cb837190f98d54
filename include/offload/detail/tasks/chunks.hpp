// offload/detail/tasks/chunks.hpp — how map cuts its input into calls and
// puts the results back together: `chunk_size` items per call (the seeds'
// main lever against per-call hand-off cost), results in input order.
#pragma once

#include <cstddef>
#include <iterator>
#include <stdexcept>
#include <utility>
#include <vector>

namespace offload::detail {

// What map accepts: std::ranges::input_range and range_value_t, spelled with
// <iterator> alone (<ranges> costs every includer ~50 ms of compile time).
template <class R>
concept input_range = requires(R& r) {
    std::ranges::begin(r);
    std::ranges::end(r);
} && std::input_iterator<decltype(std::ranges::begin(std::declval<R&>()))>;

template <class R>
using range_value_t = std::iter_value_t<decltype(std::ranges::begin(std::declval<R&>()))>;

/// The elements of `range`, copied, in chunks of `chunk_size` (the last may be shorter).
template <class T, class Range>
std::vector<std::vector<T>> split_chunks(Range&& range, std::size_t chunk_size) {
    if (chunk_size == 0)
        throw std::invalid_argument("offload::map: chunk_size must be at least 1 (it is the number of items per call)");
    std::vector<std::vector<T>> chunks;
    std::vector<T> cur;
    for (auto&& x : range) {
        cur.push_back(x);
        if (cur.size() == chunk_size) chunks.push_back(std::exchange(cur, {}));
    }
    if (!cur.empty()) chunks.push_back(std::move(cur));
    return chunks;
}

/// The chunks' results, one after the other.
template <class R>
std::vector<R> concat_chunks(std::vector<std::vector<R>> parts) {
    std::size_t total = 0;
    for (auto& p : parts) total += p.size();
    std::vector<R> out;
    out.reserve(total);
    for (auto& p : parts)
        for (auto& r : p) out.push_back(std::move(r));
    return out;
}

} // namespace offload::detail
