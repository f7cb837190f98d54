// offload/detail/codec_core.hpp — the core of the process-boundary codec:
// the customization point offload::codec<T>, the concept
// offload::serializable<T>, the helpers every codec shares (minimal encoded
// sizes, element padding), and the codecs for scalars. The wire format and the
// rules for user types are documented in <offload/serialize.hpp>.
#pragma once

#include <offload/detail/codec_io.hpp>
#include <offload/errors.hpp>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <variant>

namespace offload {

/// The customization point: a specialization provides
///     static void encode(detail::byte_writer&, const T&);
///     static T decode(detail::byte_reader&);
/// The primary template has neither, so T is not serializable.
template <class T, class = void>
struct codec {};

/// True exactly when codec<T> can encode and decode T (recursively). Never
/// true for pointers, references, cv-qualified types, std::function, lambdas.
template <class T>
concept serializable = std::same_as<T, std::remove_cvref_t<T>> && !std::is_pointer_v<T> &&
                       requires(detail::byte_writer& w, detail::byte_reader& r, const T& value) {
                           { codec<T>::encode(w, value) } -> std::same_as<void>;
                           { codec<T>::decode(r) } -> std::same_as<T>;
                       };

namespace detail {

/// The fewest bytes an encoding of T takes (0 when the codec does not say).
template <class T>
constexpr std::size_t min_size() {
    if constexpr (requires { codec<T>::min_size; })
        return codec<T>::min_size;
    else
        return 0;
}

template <class... T>
inline constexpr std::size_t min_size_sum = (std::size_t{0} + ... + min_size<T>());

// One element of a counted container: zero-size elements carry a 0x00 byte
// (see the wire format) so that a count is always backed by input bytes.
template <class... T>
inline constexpr bool needs_pad = min_size_sum<T...> == 0;

template <class... T>
inline constexpr std::size_t element_unit = needs_pad<T...> ? 1 : min_size_sum<T...>;

template <class... T>
void write_pad(byte_writer& w) {
    if constexpr (needs_pad<T...>)
        w.write_fixed(std::uint8_t{0});
}

template <class Container, class... T>
void read_pad(byte_reader& r) {
    if constexpr (needs_pad<T...>)
        if (r.read_fixed<std::uint8_t>(type_name<Container>()) != 0)
            r.fail(type_name<Container>(), "element padding byte is not 0");
}

// Arithmetic types (and enums over them) whose bytes can be copied in bulk:
// every bit pattern is a valid value, so no per-element validation.
template <class T>
concept bulk_copyable = (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) ||
                        (std::is_enum_v<T> && !std::is_same_v<std::underlying_type_t<T>, bool>);



template <class Tie>
void encode_tied(byte_writer& w, const Tie& fields) {
    std::apply([&w](const auto&... f) { (codec<std::remove_cvref_t<decltype(f)>>::encode(w, f), ...); }, fields);
}

} // namespace detail

// --- scalars ----------------------------------------------------------------------

/// Arithmetic types: fixed-width little-endian.
template <class T>
    requires std::is_arithmetic_v<T>
struct codec<T> {
    static constexpr std::size_t min_size = sizeof(T);
    static void encode(detail::byte_writer& w, const T& v) { w.write_fixed(v); }
    static T decode(detail::byte_reader& r) { return r.read_fixed<T>(detail::type_name<T>()); }
};

/// bool: one byte, 0 or 1.
template <>
struct codec<bool> {
    static constexpr std::size_t min_size = 1;
    static void encode(detail::byte_writer& w, const bool& v) { w.write_fixed(static_cast<std::uint8_t>(v)); }
    static bool decode(detail::byte_reader& r) {
        const auto b = r.read_fixed<std::uint8_t>("bool");
        if (b > 1)
            r.fail("bool", "byte " + std::to_string(b) + " is neither 0 nor 1");
        return b == 1;
    }
};

/// Enums (std::byte included): the underlying integer, not range-checked.
template <class E>
    requires std::is_enum_v<E>
struct codec<E> {
    using underlying = std::underlying_type_t<E>;
    static constexpr std::size_t min_size = sizeof(underlying);
    static void encode(detail::byte_writer& w, const E& v) { codec<underlying>::encode(w, static_cast<underlying>(v)); }
    static E decode(detail::byte_reader& r) { return static_cast<E>(codec<underlying>::decode(r)); }
};

/// std::monostate: nothing on the wire.
template <>
struct codec<std::monostate> {
    static constexpr std::size_t min_size = 0;
    static void encode(detail::byte_writer&, const std::monostate&) {}
    static std::monostate decode(detail::byte_reader&) { return {}; }
};

/// std::chrono::duration: count() as Rep.
template <class Rep, class Period>
    requires serializable<Rep>
struct codec<std::chrono::duration<Rep, Period>> {
    using type = std::chrono::duration<Rep, Period>;
    static constexpr std::size_t min_size = detail::min_size<Rep>();
    static void encode(detail::byte_writer& w, const type& v) { codec<Rep>::encode(w, v.count()); }
    static type decode(detail::byte_reader& r) { return type(codec<Rep>::decode(r)); }
};


} // namespace offload
