// offload/detail/codec/std_types.hpp — codecs for the standard library types that
// cross the process boundary: std::string, vector (bulk memcpy for arithmetic
// elements), array, pair, tuple, optional, variant, map, unordered_map, set and
// unordered_set. Formats are documented in <offload/serialize.hpp>.
#pragma once

#include <offload/codec.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace offload {

// --- sequences ----------------------------------------------------------------------

/// std::string: varint length, then the bytes.
template <class Traits, class Alloc>
struct codec<std::basic_string<char, Traits, Alloc>> {
    using type = std::basic_string<char, Traits, Alloc>;
    static constexpr std::size_t min_size = 1;
    static void encode(byte_writer& w, const type& s) {
        w.write_varint(s.size());
        w.write_bytes(s.data(), s.size());
    }
    static type decode(byte_reader& r) {
        const auto n = r.read_count(1, detail::type_name<type>());
        const auto bytes = r.read_span(n, detail::type_name<type>());
        type s;
        s.reserve(n);
        detail::advise_huge_pages(s.data(), n);
        s.append(reinterpret_cast<const char*>(bytes.data()), n);
        return s;
    }
};

/// std::vector: varint count, then the elements (one memcpy for arithmetic T).
template <class T, class Alloc>
    requires serializable<T>
struct codec<std::vector<T, Alloc>> {
    using type = std::vector<T, Alloc>;
    static constexpr std::size_t min_size = 1;
    static void encode(byte_writer& w, const type& v) {
        w.write_varint(v.size());
        if constexpr (detail::bulk_copyable<T> && std::endian::native == std::endian::little) {
            w.write_bytes(v.data(), v.size() * sizeof(T));
        } else {
            for (const auto& e : v) {
                detail::write_pad<T>(w);
                codec<T>::encode(w, e);
            }
        }
    }
    static type decode(byte_reader& r) {
        constexpr auto name = detail::type_name<type>();
        const auto n = r.read_count(detail::element_unit<T>, name);
        type v;
        if constexpr (detail::bulk_copyable<T> && std::endian::native == std::endian::little) {
            const auto bytes = r.read_span(n * sizeof(T), name); // n * sizeof(T) <= remaining
            v.reserve(n);
            detail::advise_huge_pages(v.data(), bytes.size());
            if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) == 0) {
                // One pass over fresh memory (resize would zero it first).
                const T* first = reinterpret_cast<const T*>(bytes.data());
                v.assign(first, first + n);
            } else {
                v.resize(n);
                if (n != 0) std::memcpy(v.data(), bytes.data(), bytes.size());
            }
        } else {
            v.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                detail::read_pad<type, T>(r);
                v.push_back(codec<T>::decode(r));
            }
        }
        return v;
    }
};

/// std::array: the N elements, no count.
template <class T, std::size_t N>
    requires serializable<T>
struct codec<std::array<T, N>> {
    using type = std::array<T, N>;
    static constexpr std::size_t min_size = N * detail::min_size<T>();
    static void encode(byte_writer& w, const type& a) {
        if constexpr (detail::bulk_copyable<T> && std::endian::native == std::endian::little)
            w.write_bytes(a.data(), N * sizeof(T));
        else
            for (const auto& e : a) codec<T>::encode(w, e);
    }
    static type decode(byte_reader& r) {
        if constexpr (detail::bulk_copyable<T> && std::endian::native == std::endian::little) {
            type a;
            r.read_bytes(a.data(), N * sizeof(T), detail::type_name<type>());
            return a;
        } else if constexpr (std::default_initializable<T>) {
            type a;
            for (auto& e : a) e = codec<T>::decode(r);
            return a;
        } else {
            // Braced initializers are evaluated left to right.
            return [&r]<std::size_t... I>(std::index_sequence<I...>) {
                return type{{((void)I, codec<T>::decode(r))...}};
            }(std::make_index_sequence<N>{});
        }
    }
};

// --- products and sums ----------------------------------------------------------------

/// std::pair: first, then second.
template <class A, class B>
    requires serializable<A> && serializable<B>
struct codec<std::pair<A, B>> {
    static constexpr std::size_t min_size = detail::min_size_sum<A, B>;
    static void encode(byte_writer& w, const std::pair<A, B>& p) {
        codec<A>::encode(w, p.first);
        codec<B>::encode(w, p.second);
    }
    static std::pair<A, B> decode(byte_reader& r) {
        A a = codec<A>::decode(r); // named: function arguments have no order
        return std::pair<A, B>(std::move(a), codec<B>::decode(r));
    }
};

/// std::tuple: the members in order.
template <class... A>
    requires(serializable<A> && ...)
struct codec<std::tuple<A...>> {
    static constexpr std::size_t min_size = detail::min_size_sum<A...>;
    static void encode(byte_writer& w, const std::tuple<A...>& t) { detail::encode_tied(w, t); }
    static std::tuple<A...> decode(byte_reader& r) {
        return std::tuple<A...>{codec<A>::decode(r)...}; // braced: left to right
    }
};

/// std::optional: tag byte 0/1, then the value if present.
template <class T>
    requires serializable<T>
struct codec<std::optional<T>> {
    static constexpr std::size_t min_size = 1;
    static void encode(byte_writer& w, const std::optional<T>& o) {
        w.write_fixed(static_cast<std::uint8_t>(o.has_value()));
        if (o) codec<T>::encode(w, *o);
    }
    static std::optional<T> decode(byte_reader& r) {
        constexpr auto name = detail::type_name<std::optional<T>>();
        const auto tag = r.read_fixed<std::uint8_t>(name);
        if (tag > 1) r.fail(name, "tag " + std::to_string(tag) + " is neither 0 (empty) nor 1 (value)");
        if (tag == 0) return std::nullopt;
        return std::optional<T>(std::in_place, codec<T>::decode(r));
    }
};

/// std::variant: varint index, then that alternative.
template <class... A>
    requires(serializable<A> && ...)
struct codec<std::variant<A...>> {
    using type = std::variant<A...>;
    static constexpr std::size_t min_size = 1 + std::min({detail::min_size<A>()...});
    static void encode(byte_writer& w, const type& v) {
        if (v.valueless_by_exception())
            throw serialization_error("offload::serialization_error: cannot encode " +
                                      std::string(detail::type_name<type>()) +
                                      ": the variant is valueless (an assignment to it threw)");
        w.write_varint(v.index());
        std::visit([&w](const auto& x) { codec<std::remove_cvref_t<decltype(x)>>::encode(w, x); }, v);
    }
    static type decode(byte_reader& r) {
        constexpr auto name = detail::type_name<type>();
        const auto index = r.read_varint(name);
        if (index >= sizeof...(A))
            r.fail(name, "alternative index " + std::to_string(index) + " out of range (" +
                             std::to_string(sizeof...(A)) + " alternatives)");
        return decode_table(std::index_sequence_for<A...>{})[index](r);
    }

private:
    template <std::size_t... I>
    static constexpr auto decode_table(std::index_sequence<I...>) {
        return std::array<type (*)(byte_reader&), sizeof...(A)>{+[](byte_reader& r) {
            return type(std::in_place_index<I>, codec<std::variant_alternative_t<I, type>>::decode(r));
        }...};
    }
};

// --- associative containers ---------------------------------------------------------------

namespace detail {

// Shared by the maps and sets: varint count, then the elements; a key that
// repeats is an error (the encoder never writes one).
template <class Container, class... Elem>
struct assoc_codec {
    static constexpr std::size_t min_size = 1;
    static void encode(byte_writer& w, const Container& c) {
        w.write_varint(c.size());
        for (const auto& e : c) {
            write_pad<Elem...>(w);
            if constexpr (sizeof...(Elem) == 2) {
                codec<std::tuple_element_t<0, std::tuple<Elem...>>>::encode(w, e.first);
                codec<std::tuple_element_t<1, std::tuple<Elem...>>>::encode(w, e.second);
            } else {
                codec<Elem...>::encode(w, e);
            }
        }
    }
    static Container decode(byte_reader& r) {
        constexpr auto name = type_name<Container>();
        const auto n = r.read_count(element_unit<Elem...>, name);
        Container c;
        if constexpr (requires { c.reserve(n); }) c.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            read_pad<Container, Elem...>(r);
            const std::size_t at = r.offset();
            const std::size_t before = c.size();
            if constexpr (sizeof...(Elem) == 2) {
                using K = std::tuple_element_t<0, std::tuple<Elem...>>;
                using V = std::tuple_element_t<1, std::tuple<Elem...>>;
                K k = codec<K>::decode(r);
                c.emplace_hint(c.end(), std::move(k), codec<V>::decode(r));
            } else {
                c.emplace_hint(c.end(), codec<Elem...>::decode(r));
            }
            if (c.size() == before)
                throw serialization_error("offload::serialization_error: cannot decode " + std::string(name) +
                                          " at byte offset " + std::to_string(at) +
                                          ": repeated key (the message is corrupt)");
        }
        return c;
    }
};

} // namespace detail

template <class K, class V, class C, class A>
    requires serializable<K> && serializable<V>
struct codec<std::map<K, V, C, A>> : detail::assoc_codec<std::map<K, V, C, A>, K, V> {};

template <class K, class V, class H, class E, class A>
    requires serializable<K> && serializable<V>
struct codec<std::unordered_map<K, V, H, E, A>> : detail::assoc_codec<std::unordered_map<K, V, H, E, A>, K, V> {};

template <class K, class C, class A>
    requires serializable<K>
struct codec<std::set<K, C, A>> : detail::assoc_codec<std::set<K, C, A>, K> {};

template <class K, class H, class E, class A>
    requires serializable<K>
struct codec<std::unordered_set<K, H, E, A>> : detail::assoc_codec<std::unordered_set<K, H, E, A>, K> {};

} // namespace offload
