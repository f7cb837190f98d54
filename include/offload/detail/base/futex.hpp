// offload/detail/base/futex.hpp — the park/unpark primitive under the thread
// pool's spin-then-park hand-off: a raw Linux futex on a 32-bit counter, so a
// wake costs one syscall and only when somebody really sleeps.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace offload::detail {

/// Sleeps while `word` still holds `expected` (spurious wake-ups possible).
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
    static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

/// Wakes up to `n` threads sleeping on `word`.
inline void futex_wake(std::atomic<std::uint32_t>& word, int n) noexcept {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

} // namespace offload::detail
