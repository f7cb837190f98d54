// seed004_shared_buffer.cpp — seed 004, "shared memory": worker processes
// modify an array in place, and the parent reads the result without any copy.
// Replaces Python's shared_memory.SharedMemory + a numpy view in each process.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <span>

using offload::task;

// Runs in a worker process. The buffer arrives as a handle (its memfd travels
// beside the message), so the worker maps the very pages the parent sees:
// writing them is the whole result. Doubles elements [begin, end).
std::size_t double_in_place(offload::shared_buffer buf, std::size_t begin, std::size_t end) {
    std::span<double> a = buf.as_span<double>();
    for (std::size_t i = begin; i < end; ++i) a[i] *= 2;
    return end - begin;
}

task<int> amain(offload::process_pool& pool) {
    constexpr std::size_t n = 1 << 20; // 8 MiB of doubles
    // Zero-filled shared memory; no name to pick or unlink: the kernel frees it
    // when the last process holding it lets go.
    offload::shared_buffer buf(n * sizeof(double));
    std::span<double> a = buf.as_span<double>();
    for (std::size_t i = 0; i < n; ++i) a[i] = static_cast<double>(i + 1);

    // Two workers, one half each, at the same time. Awaiting both results is
    // what makes their writes safe to read here.
    auto [lo, hi] = co_await offload::gather(offload::run_in_executor(pool, double_in_place, buf, 0, n / 2),
                                             offload::run_in_executor(pool, double_in_place, buf, n / 2, n));

    fmt::print("workers doubled {} + {} elements: [{}, {}, {}, ..., {}]\n", lo, hi, a[0], a[1], a[2], a[n - 1]);
    const auto st = pool.stats();
    fmt::print("bytes sent to workers: {} for a {} byte array (it travelled as a handle)\n", st.bytes_sent, buf.size());

    for (std::size_t i = 0; i < n; ++i) {
        if (a[i] != 2.0 * static_cast<double>(i + 1)) {
            fmt::print("error: element {} is {}, expected {}\n", i, a[i], 2.0 * static_cast<double>(i + 1));
            co_return 1;
        }
    }
    if (lo + hi != n) {
        fmt::print("error: the workers report {} elements, expected {}\n", lo + hi, n);
        co_return 1;
    }
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    offload::process_pool pool({.workers = 2});
    return offload::run(amain(pool));
}
