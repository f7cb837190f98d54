// tests/support/busy_wait.hpp — hold the calling thread for a while without
// sleeping, the way CPU-bound work holds the event loop (for slow-step tests),
// and measure elapsed time on the loop's clock.
#pragma once

#include <chrono>

namespace offload::test {

/// Spins on steady_clock until `d` has passed.
inline void busy_wait(std::chrono::steady_clock::duration d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) {
    }
}

/// Time since `t0` on steady_clock (the event loop's clock).
inline std::chrono::steady_clock::duration elapsed_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::steady_clock::now() - t0;
}

} // namespace offload::test
