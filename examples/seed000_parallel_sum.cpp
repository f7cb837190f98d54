// seed000_parallel_sum.cpp — seed 000, "chunking large workloads": Python's
// parallel_sum, which slices a list into chunks, sums each chunk's squares in
// a process pool with gather and adds the partial sums on the loop. The
// result is checked against the same sum computed inline.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

using offload::task;

// Runs in a worker: the chunk arrives as serialized bytes, the partial sum goes back.
std::uint64_t sum_squares(const std::vector<std::uint32_t>& chunk) {
    std::uint64_t s = 0;
    for (std::uint64_t x : chunk) s += x * x;
    return s;
}

// One chunk's trip to the pool, as a task so that gather can take a vector of them.
task<std::uint64_t> sum_chunk(offload::process_pool& pool, std::vector<std::uint32_t> chunk) {
    co_return co_await offload::run_in_executor(pool, sum_squares, std::move(chunk));
}

task<std::uint64_t> parallel_sum(offload::process_pool& pool, const std::vector<std::uint32_t>& data,
                                 std::size_t chunk) {
    std::vector<task<std::uint64_t>> parts;
    for (std::size_t i = 0; i < data.size(); i += chunk) {
        const auto first = data.begin() + static_cast<std::ptrdiff_t>(i);
        const auto last = data.begin() + static_cast<std::ptrdiff_t>(std::min(data.size(), i + chunk));
        parts.push_back(sum_chunk(pool, std::vector<std::uint32_t>(first, last)));
    }
    auto partials = co_await offload::gather(std::move(parts)); // in chunk order
    co_return std::accumulate(partials.begin(), partials.end(), std::uint64_t{0});
}

task<int> amain(offload::process_pool& pool) {
    // 2 M values (the seed does not size it; small enough to run in a blink).
    std::vector<std::uint32_t> data(2'000'000);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint32_t>(i % 10'007);

    std::vector<std::uint32_t> tiny(1, 1u); // named: no braced temporaries in a co_await (STYLE.md, g++ 12)
    co_await offload::run_in_executor(pool, sum_squares, tiny); // warm-up: workers connected

    auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t inline_sum = sum_squares(data);
    const auto inline_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);

    // Chunk size is the lever: too big and one worker idles, too small and
    // the per-call cost (copying each chunk across) dominates.
    const std::array<std::size_t, 3> chunks{1'000'000, 250'000, 25'000};
    for (std::size_t chunk : chunks) {
        t0 = std::chrono::steady_clock::now();
        const std::uint64_t total = co_await parallel_sum(pool, data, chunk);
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
        fmt::print("chunk {:>9}: {:>3} calls, sum {} in {:>6} us\n", chunk, (data.size() + chunk - 1) / chunk, total,
                   us.count());
        if (total != inline_sum) {
            fmt::print("FAILED: the pool's sum {} differs from the inline sum {}\n", total, inline_sum);
            co_return 1;
        }
    }
    // Summing squares is ~1 ns per value in C++: cheaper than copying the
    // value to another process, so inline wins here. Chunking pays off when
    // each chunk is milliseconds of real work (see seed000_count_primes).
    fmt::print("inline:              sum {} in {:>6} us; {} bytes crossed to the workers\n", inline_sum,
               inline_us.count(), pool.stats().bytes_sent);
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    offload::process_pool pool({.workers = 2});
    return offload::run(amain(pool));
}
