// libFuzzer target for the process-boundary codec (offload/serialize.hpp):
// decodes the input as several types; only serialization_error is an
// acceptable failure. A decoded value must re-encode to bytes that decode to
// an equal value and re-encode to the same bytes.
#include <offload/serialize.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <variant>
#include <vector>

namespace {

struct record {
    std::int32_t id;
    std::string name;
    std::optional<std::vector<std::uint16_t>> samples;
    std::variant<std::monostate, bool, std::string> tag;
    std::array<std::uint8_t, 2> flags;
    bool operator==(const record&) const = default;
};

using nested =
    std::map<std::string, std::vector<std::variant<std::optional<std::int64_t>, std::string, std::set<std::uint8_t>>>>;
using scalars = std::tuple<bool, std::int8_t, std::uint16_t, std::int32_t, std::uint64_t, float, double, char>;
using containers = std::pair<std::unordered_map<std::uint32_t, std::string>, std::vector<std::monostate>>;

[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "codec_fuzz finding: %s\n", what);
    std::abort();
}

// Values may hold NaN (scalars), so equality is checked where it is meaningful
// and byte stability everywhere.
// What each type promises beyond "decodes its own encoding":
//  compare    values compare equal after a round trip (false with NaN inside)
//  stable     encoding a decoded copy gives the same bytes (false for
//             unordered containers, whose iteration order may change)
//  canonical  one encoding per value (no maps: their input order may
//             differ), so an accepted input must be exactly that encoding
struct promises {
    bool compare, stable, canonical;
};

template <class T, promises P>
void check(std::span<const std::byte> input) {
    T value;
    try {
        value = offload::detail::decode<T>(input);
    } catch (const offload::serialization_error&) {
        return; // rejected: fine
    }
    const auto bytes = offload::detail::encode_to_bytes(value);
    T again = offload::detail::decode<T>(bytes); // must not throw
    if constexpr (P.compare)
        if (!(again == value)) finding("re-encoded value decodes to a different value");
    if constexpr (P.stable)
        if (offload::detail::encode_to_bytes(again) != bytes) finding("encoding is not stable across a round trip");
    if constexpr (P.canonical)
        if (!std::equal(bytes.begin(), bytes.end(), input.begin(), input.end()))
            finding("accepted a non-canonical encoding");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
    check<nested, promises{.compare = true, .stable = true, .canonical = false}>(input);
    check<record, promises{.compare = true, .stable = true, .canonical = true}>(input);
    check<scalars, promises{.compare = false, .stable = true, .canonical = true}>(input);
    check<containers, promises{.compare = true, .stable = false, .canonical = false}>(input);
    // Argument lists: decode_args without the end check, as the pool does.
    try {
        offload::byte_reader r(input);
        (void)offload::detail::decode_args<std::string, std::vector<double>, std::optional<record>>(r);
    } catch (const offload::serialization_error&) {
    }
    return 0;
}
