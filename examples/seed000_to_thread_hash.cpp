// seed000_to_thread_hash.cpp — seed 000, "to_thread for GIL-releasing work":
// Python's `await asyncio.to_thread(hash_payload, data)`. A hash over a few
// MiB runs on the loop's default thread pool while a ticker task keeps
// ticking; the same hash run inline freezes the ticker for its whole length.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

using namespace std::chrono_literals;
using offload::task;

// FNV-1a 64 over the payload, several passes so it costs tens of ms
// (a stand-in for sha256 / zlib: synchronous CPU work with no await inside).
std::uint64_t hash_payload(std::span<const std::uint8_t> data) {
    std::uint64_t h = 14695981039346656037ull;
    for (int pass = 0; pass < 4; ++pass)
        for (std::uint8_t b : data) h = (h ^ b) * 1099511628211ull;
    return h;
}

// Counts ticks while it runs: a tick is the loop serving another task.
task<> ticker(int& ticks) {
    for (;;) {
        co_await offload::sleep(2ms);
        ++ticks;
    }
}

task<int> amain() {
    // 8 MiB payload (scaled down so the program runs well under a second).
    std::vector<std::uint8_t> payload(8u << 20);
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 2654435761u >> 13);

    int ticks = 0;
    auto tick = offload::create_task(ticker(ticks), "ticker");
    co_await offload::sleep(5ms); // let the ticker start

    // Offloaded: a span is a view (no copy); the payload outlives the call
    // because we await it here.
    auto t0 = std::chrono::steady_clock::now();
    const int before = ticks;
    std::uint64_t offloaded = co_await offload::to_thread(hash_payload, std::span<const std::uint8_t>(payload));
    const int ticks_offloaded = ticks - before;
    auto ms_offloaded = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    // Inline: the loop thread is busy, so no other task can run meanwhile.
    t0 = std::chrono::steady_clock::now();
    const int before_inline = ticks;
    std::uint64_t inline_hash = hash_payload(payload);
    const int ticks_inline = ticks - before_inline;
    auto ms_inline = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    tick.cancel();
    fmt::print("to_thread: hash {:016x} in {:.1f} ms, ticker ticked {} times meanwhile\n", offloaded, ms_offloaded,
               ticks_offloaded);
    fmt::print("inline:    hash {:016x} in {:.1f} ms, ticker ticked {} times meanwhile\n", inline_hash, ms_inline,
               ticks_inline);

    // What must hold: the same hash both ways, and not a single tick while
    // the loop thread itself was hashing.
    if (offloaded != inline_hash || ticks_inline != 0) {
        fmt::print("FAILED: hashes differ or the ticker ran during the inline hash\n");
        co_return 1;
    }
    co_return 0;
}

int main() { return offload::run(amain()); }
