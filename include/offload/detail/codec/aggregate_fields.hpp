// offload/detail/codec/aggregate_fields.hpp — field access for the codec's automatic
// aggregate support: counts an aggregate's fields (up to 16) and turns an
// object into a std::tuple of references to them via structured bindings.
//
// Counting uses two probes, and a type is handled only when they agree:
//  - "flat": the most N for which T{any_field x N} compiles. A C-array field
//    makes this too large (brace elision spreads initializers over elements).
//  - "braces": the most N for which T{{}, ..., {}} (N times) compiles. `{}`
//    initializes exactly one field, so no brace elision, but it needs every
//    field to be copy-list-initializable from {} (non-explicit default ctor).
// Agreement rules out C-array fields and fields that are not default
// constructible; base classes cannot be detected in C++20 and are documented
// as unsupported (serialize.hpp, "Aggregates").
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace offload::detail {

inline constexpr std::size_t max_aggregate_fields = 16;
inline constexpr std::size_t no_field_count = static_cast<std::size_t>(-1);

// Converts to any field type; only ever used in unevaluated probes.
struct any_field {
    template <class U>
    operator U() const; // never defined
};

template <class T, std::size_t... I>
constexpr bool flat_initializable(std::index_sequence<I...>) {
    return requires { T{(void(I), any_field{})...}; };
}

template <class T, std::size_t N = max_aggregate_fields + 1>
constexpr std::size_t flat_field_count() {
    if constexpr (flat_initializable<T>(std::make_index_sequence<N>{}))
        return N;
    else if constexpr (N == 0)
        return no_field_count;
    else
        return flat_field_count<T, N - 1>();
}

// A pack cannot expand to `{}`, so the brace probe is spelled out.
template <class T>
constexpr std::size_t brace_field_count() {
    // clang-format off
    if constexpr (requires { T{{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}}; }) return 17;
    else if constexpr (requires { T{{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}}; }) return 16;
    else if constexpr (requires { T{{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}}; }) return 15;
    else if constexpr (requires { T{{},{},{},{},{},{},{},{},{},{},{},{},{},{}}; }) return 14;
    else if constexpr (requires { T{{},{},{},{},{},{},{},{},{},{},{},{},{}}; }) return 13;
    else if constexpr (requires { T{{},{},{},{},{},{},{},{},{},{},{},{}}; }) return 12;
    else if constexpr (requires { T{{},{},{},{},{},{},{},{},{},{},{}}; }) return 11;
    else if constexpr (requires { T{{},{},{},{},{},{},{},{},{},{}}; }) return 10;
    else if constexpr (requires { T{{},{},{},{},{},{},{},{},{}}; }) return 9;
    else if constexpr (requires { T{{},{},{},{},{},{},{},{}}; }) return 8;
    else if constexpr (requires { T{{},{},{},{},{},{},{}}; }) return 7;
    else if constexpr (requires { T{{},{},{},{},{},{}}; }) return 6;
    else if constexpr (requires { T{{},{},{},{},{}}; }) return 5;
    else if constexpr (requires { T{{},{},{},{}}; }) return 4;
    else if constexpr (requires { T{{},{},{}}; }) return 3;
    else if constexpr (requires { T{{},{}}; }) return 2;
    else if constexpr (requires { T{{}}; }) return 1;
    else if constexpr (requires { T{}; }) return 0;
    else return no_field_count;
    // clang-format on
}

/// The number of fields of aggregate T, or no_field_count when T cannot be
/// handled automatically (more than 16 fields, C-array fields, a field that
/// is not default constructible, a reference field).
template <class T>
constexpr std::size_t aggregate_field_count() {
    if constexpr (!std::is_aggregate_v<T> || std::is_array_v<T> || std::is_union_v<T>)
        return no_field_count;
    else {
        constexpr std::size_t flat = flat_field_count<T>();
        constexpr std::size_t braces = brace_field_count<T>();
        if constexpr (flat != braces || flat > max_aggregate_fields)
            return no_field_count;
        else
            return flat;
    }
}

/// std::tie of the fields of t (T possibly const), in declaration order.
template <std::size_t N, class T>
constexpr auto tie_fields(T& t) noexcept {
    // clang-format off
    if constexpr (N == 0) { (void)t; return std::tuple<>{}; }
    else if constexpr (N == 1) { auto& [a] = t; return std::tie(a); }
    else if constexpr (N == 2) { auto& [a,b] = t; return std::tie(a,b); }
    else if constexpr (N == 3) { auto& [a,b,c] = t; return std::tie(a,b,c); }
    else if constexpr (N == 4) { auto& [a,b,c,d] = t; return std::tie(a,b,c,d); }
    else if constexpr (N == 5) { auto& [a,b,c,d,e] = t; return std::tie(a,b,c,d,e); }
    else if constexpr (N == 6) { auto& [a,b,c,d,e,f] = t; return std::tie(a,b,c,d,e,f); }
    else if constexpr (N == 7) { auto& [a,b,c,d,e,f,g] = t; return std::tie(a,b,c,d,e,f,g); }
    else if constexpr (N == 8) { auto& [a,b,c,d,e,f,g,h] = t; return std::tie(a,b,c,d,e,f,g,h); }
    else if constexpr (N == 9) { auto& [a,b,c,d,e,f,g,h,i] = t; return std::tie(a,b,c,d,e,f,g,h,i); }
    else if constexpr (N == 10) { auto& [a,b,c,d,e,f,g,h,i,j] = t; return std::tie(a,b,c,d,e,f,g,h,i,j); }
    else if constexpr (N == 11) { auto& [a,b,c,d,e,f,g,h,i,j,k] = t; return std::tie(a,b,c,d,e,f,g,h,i,j,k); }
    else if constexpr (N == 12) { auto& [a,b,c,d,e,f,g,h,i,j,k,l] = t; return std::tie(a,b,c,d,e,f,g,h,i,j,k,l); }
    else if constexpr (N == 13) { auto& [a,b,c,d,e,f,g,h,i,j,k,l,m] = t; return std::tie(a,b,c,d,e,f,g,h,i,j,k,l,m); }
    else if constexpr (N == 14) { auto& [a,b,c,d,e,f,g,h,i,j,k,l,m,n] = t; return std::tie(a,b,c,d,e,f,g,h,i,j,k,l,m,n); }
    else if constexpr (N == 15) { auto& [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o] = t; return std::tie(a,b,c,d,e,f,g,h,i,j,k,l,m,n,o); }
    else { static_assert(N == 16); auto& [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p] = t; return std::tie(a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p); }
    // clang-format on
}

template <class Tuple>
struct decayed_tuple;
template <class... F>
struct decayed_tuple<std::tuple<F...>> {
    using type = std::tuple<std::remove_cvref_t<F>...>;
};

/// std::tuple of the (cv-unqualified) field types of aggregate T.
template <class T>
using aggregate_field_types =
    typename decayed_tuple<decltype(tie_fields<aggregate_field_count<T>()>(std::declval<T&>()))>::type;

} // namespace offload::detail
