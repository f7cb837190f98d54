// seed004_chunked.cpp — seed 004, "chunked processing": many small items sent
// to a process pool a chunk at a time, so the per-call cost (a message each way)
// is paid per chunk, not per item. Replaces Python's chunk_list + executor.map
// over chunks + flattening the results.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

using offload::task;

// Runs in a worker process: a tiny amount of work per item (a microsecond or
// so), so that the cost of sending each item dominates unless items are chunked.
int process_item(int x) {
    unsigned h = static_cast<unsigned>(x);
    for (int i = 0; i < 64; ++i) h = h * 2654435761u + 1;
    return static_cast<int>(h >> 1);
}

// The by-hand version of a chunk, as in the seed: one call handles many items.
std::vector<int> process_chunk(const std::vector<int>& chunk) {
    std::vector<int> out;
    out.reserve(chunk.size());
    for (int x : chunk) out.push_back(process_item(x));
    return out;
}

task<std::vector<int>> one_chunk(offload::process_pool& pool, std::vector<int> chunk) {
    co_return co_await offload::run_in_executor(pool, process_chunk, std::move(chunk));
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

task<int> amain(offload::process_pool& pool) {
    constexpr int n = 10'000; // as in the seed
    std::vector<int> items;
    for (int i = 0; i < n; ++i) items.push_back(i);
    std::vector<int> expected;
    for (int x : items) expected.push_back(process_item(x));

    // offload::map does the chunking: chunk_size items per call, results in input order.
    // Timings are printed, never checked (they depend on the machine's load).
    int wrong = 0;
    for (std::size_t chunk : {std::size_t{1}, std::size_t{10}, std::size_t{100}, std::size_t{1000}}) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<int> got = co_await offload::map(pool, process_item, items, chunk);
        const double ms = ms_since(t0);
        fmt::print("map, chunk {:4}: {:5} calls, {:7.1f} ms\n", chunk, (n + chunk - 1) / chunk, ms);
        wrong += got != expected;
    }

    // The same by hand: split, one call per chunk, gather, flatten.
    const auto t0 = std::chrono::steady_clock::now();
    constexpr std::size_t chunk = 500;
    std::vector<task<std::vector<int>>> calls;
    for (std::size_t i = 0; i < items.size(); i += chunk) {
        std::vector<int> part(items.begin() + static_cast<std::ptrdiff_t>(i),
                              items.begin() + static_cast<std::ptrdiff_t>(std::min(i + chunk, items.size())));
        calls.push_back(one_chunk(pool, std::move(part)));
    }
    std::vector<std::vector<int>> parts = co_await offload::gather(std::move(calls));
    std::vector<int> flat;
    for (auto& p : parts) flat.insert(flat.end(), p.begin(), p.end());
    fmt::print("by hand, chunk {}: {} calls, {:7.1f} ms\n", chunk, parts.size(), ms_since(t0));
    wrong += flat != expected;

    if (wrong != 0) {
        fmt::print("error: {} runs gave wrong results\n", wrong);
        co_return 1;
    }
    fmt::print("every run gave the same {} results\n", n);
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    offload::process_pool pool({.workers = 2});
    return offload::run(amain(pool));
}
