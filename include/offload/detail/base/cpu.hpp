// offload/detail/base/cpu.hpp — what lock-free code needs from the CPU: the
// cache line size that keeps hot atomics of different writers apart, and the
// pause hint for spin loops.
#pragma once

#include <cstddef>

namespace offload::detail {

/// Size of a cache line (x86-64 and most aarch64 parts): fields written by
/// different threads are aligned to it so that they do not share a line.
inline constexpr std::size_t cache_line = 64;

/// Tells the CPU that we are spinning (frees pipeline resources for the
/// sibling hyper-thread, and saves power).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

} // namespace offload::detail
