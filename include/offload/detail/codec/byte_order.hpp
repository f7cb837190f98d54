// offload/detail/codec/byte_order.hpp — the byte-level helpers under the
// codec's writer and reader: little-endian stores and loads, the readable
// name of a type for error messages, and the huge-page hint for big decodes.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <sys/mman.h>

namespace offload::detail {

/// The readable name of T, for error messages ("std::vector<int>", ...).
template <class T>
constexpr std::string_view type_name() noexcept {
    // g++:   "... type_name() [with T = int; std::string_view = ...]"
    // clang: "... type_name() [T = int]"
    std::string_view p = __PRETTY_FUNCTION__;
    const auto start = p.find("T = ");
    if (start == std::string_view::npos) return "?";
    p.remove_prefix(start + 4);
    auto end = p.find(';');
    if (end == std::string_view::npos) end = p.rfind(']');
    return p.substr(0, end);
}

// Fixed-width values travel little-endian; on a little-endian host (every
// Linux target we build for) this is a plain memcpy.
template <class T>
inline void store_le(std::byte* out, T value) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    std::memcpy(out, &value, sizeof(T));
    if constexpr (std::endian::native == std::endian::big)
        for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(out[i], out[sizeof(T) - 1 - i]);
}

template <class T>
inline T load_le(const std::byte* in) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    std::byte tmp[sizeof(T)];
    std::memcpy(tmp, in, sizeof(T));
    if constexpr (std::endian::native == std::endian::big)
        for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(tmp[i], tmp[sizeof(T) - 1 - i]);
    T value;
    std::memcpy(&value, tmp, sizeof(T));
    return value;
}

/// A hint for a large buffer about to be filled for the first time: back it
/// with transparent huge pages, so the first touch faults 2 MiB at a time
/// instead of 4 KiB (on a 64 MiB decode that is most of the cost). Only the
/// whole 2 MiB pages inside [p, p + n) are advised; a no-op where THP is off.
inline void advise_huge_pages(void* p, std::size_t n) noexcept {
    constexpr std::size_t huge = std::size_t(2) << 20;
    if (n < 2 * huge) return;
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t first = (a + huge - 1) & ~(huge - 1);
    const std::uintptr_t last = (a + n) & ~(huge - 1);
    if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
}

} // namespace offload::detail
