// offload/serialize.hpp — the typed codec that carries calls, arguments and
// results across the process boundary: the customization point
// offload::codec<T>, the concept offload::serializable<T> and the
// byte_writer / byte_reader of <offload/codec.hpp>, plus codecs for the
// standard containers and vocabulary types, aggregates (automatically) and
// types that expose offload_fields(). Decoding treats every byte as
// untrusted (see byte_reader).
#pragma once

#include <offload/codec.hpp>
#include <offload/detail/codec/aggregate_fields.hpp>
#include <offload/detail/codec/std_types.hpp>
#include <offload/errors.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// Wire format, version `codec_version` (private to the library: both ends are the same
// build, so it may change with the version; nothing is self-describing).
//
//   varint            unsigned LEB128, 1..10 bytes, minimal (an overlong
//                     encoding or one over 64 bits is an error)
//   arithmetic T      sizeof(T) bytes, little-endian (floats: IEEE bits)
//   bool              1 byte, 0x00 or 0x01 (anything else is an error)
//   enum              its underlying type
//   std::byte         1 byte
//   std::string       varint length, then the bytes
//   vector<T>         varint count, then each element (arithmetic T: one
//                     block of count * sizeof(T) bytes)
//   array<T, N>       the N elements (no count)
//   pair, tuple,      the members in order, nothing else
//   aggregates,
//   offload_fields()
//   optional<T>       1 byte tag 0x00 (empty) or 0x01 followed by the value
//   variant<A...>     varint index, then the alternative
//   map, unordered_*, varint count, then each key (and value); a repeated
//   set               key is an error
//   duration<R, P>    its count() as R (the period is part of the type)
//   monostate         nothing
//   file descriptors  the value encodes an index into the fds that travel
//                     beside the bytes (byte_writer::add_fd / byte_reader::fd_at)
//
// Counts are checked before anything is allocated: a count is rejected when
// count * (minimal encoded size of one element) exceeds the bytes left. An
// element type whose minimal size is 0 (monostate, empty structs, array<T, 0>)
// is written as one 0x00 byte inside a counted container, so a count is always
// backed by input bytes. A top-level value decoded with decode<T>() must use
// every byte.
//
// Aggregates: a struct or class with only public fields, no user-declared
// constructors, no base classes, no C-array fields, at most 16 fields, each
// field serializable and default constructible (the field counter probes with
// `T{{}, ...}`; see detail/codec_fields.hpp) is serializable with no code.
// For anything else, either give the type a member
//     auto offload_fields() { return std::tie(a_, b_); }
//     auto offload_fields() const { return std::tie(a_, b_); }
// (the type must then be default constructible; decoding assigns the fields),
// or specialize offload::codec<T> with static encode/decode functions (and,
// optionally, `static constexpr std::size_t min_size`, the fewest bytes an
// encoding of T takes). Recursive types (a struct holding a vector of itself)
// need an explicit codec.

namespace offload {

/// The version of the wire format above.
inline constexpr std::uint32_t codec_version = 1;

namespace detail {

template <class T>
concept has_offload_fields = requires(T& t, const T& ct) {
    t.offload_fields();
    ct.offload_fields();
};

template <class T>
struct is_std_array : std::false_type {};
template <class T, std::size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};

template <class Tuple>
struct all_serializable;
template <class... F>
struct all_serializable<std::tuple<F...>> : std::bool_constant<(serializable<F> && ...)> {};

template <class T>
concept auto_aggregate = !has_offload_fields<T> && !is_std_array<T>::value &&
                         aggregate_field_count<T>() != no_field_count &&
                         all_serializable<aggregate_field_types<T>>::value;

template <class T>
concept fields_type =
    has_offload_fields<T> && std::default_initializable<T> &&
    all_serializable<typename decayed_tuple<decltype(std::declval<T&>().offload_fields())>::type>::value;

template <class Fields>
struct fields_min_size;
template <class... F>
struct fields_min_size<std::tuple<F...>> : std::integral_constant<std::size_t, min_size_sum<F...>> {};

} // namespace detail

// --- user types ---------------------------------------------------------------------------

/// Aggregates: their fields in declaration order (rules at the top of this file).
template <class T>
    requires detail::auto_aggregate<T>
struct codec<T> {
    /// The field types, as a std::tuple, in wire order.
    using fields = detail::aggregate_field_types<T>;
    /// The number of fields.
    static constexpr std::size_t count = detail::aggregate_field_count<T>();
    /// The fewest bytes an encoding takes (optional in a codec of yours: it lets a reader
    /// reject a container count that the remaining bytes cannot hold).
    static constexpr std::size_t min_size = detail::fields_min_size<fields>::value;
    /// Appends the encoding of a value to the writer.
    static void encode(byte_writer& w, const T& v) { detail::encode_tied(w, detail::tie_fields<count>(v)); }
    /// Reads one value (serialization_error on malformed or truncated input).
    static T decode(byte_reader& r) {
        return [&r]<std::size_t... I>(std::index_sequence<I...>) {
            return T{codec<std::tuple_element_t<I, fields>>::decode(r)...}; // braced: left to right
        }(std::make_index_sequence<count>{});
    }
};

/// Types with offload_fields(): the tied fields in order; decoding assigns
/// them on a default-constructed T.
template <class T>
    requires detail::fields_type<T>
struct codec<T> {
    /// The field types, as a std::tuple, in wire order.
    using fields = typename detail::decayed_tuple<decltype(std::declval<T&>().offload_fields())>::type;
    /// The fewest bytes an encoding takes (optional in a codec of yours: it lets a reader
    /// reject a container count that the remaining bytes cannot hold).
    static constexpr std::size_t min_size = detail::fields_min_size<fields>::value;
    /// Appends the encoding of a value to the writer.
    static void encode(byte_writer& w, const T& v) { detail::encode_tied(w, v.offload_fields()); }
    /// Reads one value (serialization_error on malformed or truncated input).
    static T decode(byte_reader& r) {
        T v;
        auto tied = v.offload_fields();
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            ((std::get<I>(tied) = codec<std::tuple_element_t<I, fields>>::decode(r)), ...);
        }(std::make_index_sequence<std::tuple_size_v<fields>>{});
        return v;
    }
};

// --- top-level helpers ---------------------------------------------------------------------

namespace detail {

template <class T>
constexpr void require_serializable() {
    static_assert(serializable<T>,
                  "offload: this type cannot cross the process boundary. Use arithmetic types, enums, "
                  "std::string, standard containers, optional/variant/tuple/pair, aggregates of those, "
                  "add `auto offload_fields()` (and a const overload) returning std::tie(fields...), or "
                  "specialize offload::codec<T>. Pointers, references and std::function are never "
                  "serializable.");
}

/// Encodes one value into a fresh byte vector (fds, if any, are dropped: use
/// a byte_writer directly when the value may carry file descriptors).
template <class T>
std::vector<std::byte> encode_to_bytes(const T& value) {
    require_serializable<T>();
    byte_writer w;
    codec<T>::encode(w, value);
    return w.take_bytes();
}

/// Decodes one T that must span all of bytes (trailing bytes are an error).
template <class T>
T decode(std::span<const std::byte> bytes, std::span<const int> fds = {}) {
    require_serializable<T>();
    byte_reader r(bytes, fds);
    T value = codec<T>::decode(r);
    r.expect_end(type_name<T>());
    return value;
}

/// Encodes a call's arguments one after the other.
template <class... A>
void encode_args(byte_writer& w, const A&... args) {
    (require_serializable<A>(), ...);
    (codec<A>::encode(w, args), ...);
}

/// Decodes arguments written by encode_args<A...>; does not check for the end.
template <class... A>
std::tuple<A...> decode_args(byte_reader& r) {
    (require_serializable<A>(), ...);
    return std::tuple<A...>{codec<A>::decode(r)...}; // braced: left to right
}

} // namespace detail
} // namespace offload
