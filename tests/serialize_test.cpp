#include <offload/serialize.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

using offload::byte_reader;
using offload::byte_writer;
using offload::serializable;
using offload::serialization_error;
using offload::detail::decode;
using offload::detail::encode_to_bytes;

namespace {

struct point {
    int x;
    double y;
    std::string label;
    bool operator==(const point&) const = default;
};

struct nested {
    point p;
    std::vector<point> more;
    std::optional<std::map<std::string, int>> table;
    std::array<std::uint16_t, 3> small;
    bool operator==(const nested&) const = default;
};

struct empty_struct {
    bool operator==(const empty_struct&) const = default;
};

enum class color : std::uint8_t { red = 1, green = 2, blue = 200 };
enum plain_enum : int { minus_one = -1, big = 1 << 30 };

// Private state, made serializable by offload_fields().
class account {
public:
    account() = default;
    account(std::string owner, std::int64_t cents) : owner_(std::move(owner)), cents_(cents) {}
    auto offload_fields() { return std::tie(owner_, cents_); }
    auto offload_fields() const { return std::tie(owner_, cents_); }
    bool operator==(const account&) const = default;

private:
    std::string owner_;
    std::int64_t cents_ = 0;
};

struct with_pointer {
    int* p;
};
struct with_c_array {
    int a[3];
    int b;
};
struct with_mutex_vector {
    std::vector<std::mutex> m;
};
struct with_function {
    std::function<void()> f;
};
struct seventeen {
    int a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q;
};
struct sixteen {
    int a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p;
    bool operator==(const sixteen&) const = default;
};
class private_fields {
    int x_ = 0;

public:
    int x() const { return x_; }
};

template <class T>
T round_trip(const T& value) {
    return decode<T>(encode_to_bytes(value));
}

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
    std::vector<std::byte> out;
    for (int v : values) out.push_back(static_cast<std::byte>(v));
    return out;
}

std::uint64_t fnv1a(const std::vector<std::uint8_t>& data) {
    std::uint64_t h = 1469598103934665603ull;
    for (auto b : data) h = (h ^ b) * 1099511628211ull;
    return h;
}

} // namespace

// --- the concept -----------------------------------------------------------------------

static_assert(serializable<int>);
static_assert(serializable<bool>);
static_assert(serializable<double>);
static_assert(serializable<long double>);
static_assert(serializable<char>);
static_assert(serializable<std::byte>);
static_assert(serializable<color>);
static_assert(serializable<std::string>);
static_assert(serializable<std::vector<std::vector<int>>>);
static_assert(serializable<std::array<std::string, 4>>);
static_assert(serializable<std::pair<int, std::string>>);
static_assert(serializable<std::tuple<>>);
static_assert(serializable<std::tuple<int, std::optional<std::string>>>);
static_assert(serializable<std::variant<std::monostate, point, std::string>>);
static_assert(serializable<std::map<std::string, std::vector<std::optional<int>>>>);
static_assert(serializable<std::unordered_map<int, std::set<std::string>>>);
static_assert(serializable<std::unordered_set<std::int64_t>>);
static_assert(serializable<std::chrono::milliseconds>);
static_assert(serializable<std::chrono::duration<double>>);
static_assert(serializable<std::monostate>);
static_assert(serializable<point>);
static_assert(serializable<nested>);
static_assert(serializable<empty_struct>);
static_assert(serializable<account>);
static_assert(serializable<sixteen>);
static_assert(serializable<std::vector<account>>);

static_assert(!serializable<int*>);
static_assert(!serializable<const char*>);
static_assert(!serializable<void*>);
static_assert(!serializable<int&>);
static_assert(!serializable<const int>);
static_assert(!serializable<std::nullptr_t>);
static_assert(!serializable<int point::*>);
static_assert(!serializable<std::mutex>);
static_assert(!serializable<std::vector<std::mutex>>);
static_assert(!serializable<std::vector<int*>>);
static_assert(!serializable<std::optional<int*>>);
static_assert(!serializable<std::map<int, void*>>);
static_assert(!serializable<std::variant<int, std::function<void()>>>);
static_assert(!serializable<std::function<int(int)>>);
static_assert(!serializable<with_pointer>);
static_assert(!serializable<with_c_array>);
static_assert(!serializable<with_mutex_vector>);
static_assert(!serializable<with_function>);
static_assert(!serializable<seventeen>);
static_assert(!serializable<private_fields>);
static_assert(!serializable<int[3]>);
// Lambdas (closure types are never aggregates), made by functions with
// external linkage so no unused-variable warning fires.
inline auto make_capturing_lambda(int c) {
    return [c](int x) { return x + c; };
}
inline auto make_stateless_lambda() {
    return [](int x) { return x; };
}
static_assert(!serializable<decltype(make_capturing_lambda(0))>);
static_assert(!serializable<decltype(make_stateless_lambda())>);

// --- round trips ----------------------------------------------------------------------------

TEST_CASE("serialize: integers round-trip at their min and max", "[serialize]") {
    auto check = [](auto v) { REQUIRE(round_trip(v) == v); };
    check(std::numeric_limits<std::int8_t>::min());
    check(std::numeric_limits<std::int8_t>::max());
    check(std::numeric_limits<std::uint8_t>::max());
    check(std::numeric_limits<std::int16_t>::min());
    check(std::numeric_limits<std::uint16_t>::max());
    check(std::numeric_limits<std::int32_t>::min());
    check(std::numeric_limits<std::int32_t>::max());
    check(std::numeric_limits<std::uint32_t>::max());
    check(std::numeric_limits<std::int64_t>::min());
    check(std::numeric_limits<std::int64_t>::max());
    check(std::numeric_limits<std::uint64_t>::max());
    check('x');
    check(char8_t{0xff});
    check(char32_t{0x10ffff});
    check(wchar_t{-1});
    check(true);
    check(false);
}

TEST_CASE("serialize: values are fixed-width little-endian with varint lengths", "[serialize]") {
    const auto bytes = encode_to_bytes(std::pair<std::uint16_t, std::string>{0x0102, "ab"});
    REQUIRE(bytes == bytes_of({0x02, 0x01, 0x02, 'a', 'b'}));
    REQUIRE(encode_to_bytes(std::vector<bool>{true, false}) == bytes_of({0x02, 0x01, 0x00}));
    REQUIRE(encode_to_bytes(std::string(300, 'z')).size() == 302); // 300 = 0xac 0x02
    REQUIRE(encode_to_bytes(std::optional<std::uint8_t>{7}) == bytes_of({0x01, 0x07}));
    REQUIRE(encode_to_bytes(std::variant<int, std::uint8_t>{std::uint8_t{9}}) == bytes_of({0x01, 0x09}));
    REQUIRE(offload::codec_version == 1);
}

TEST_CASE("serialize: floating point round-trips bit-exactly, NaN and infinities included", "[serialize]") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    REQUIRE(std::isnan(round_trip(nan)));
    REQUIRE(round_trip(std::numeric_limits<double>::infinity()) == std::numeric_limits<double>::infinity());
    REQUIRE(round_trip(-std::numeric_limits<float>::infinity()) == -std::numeric_limits<float>::infinity());
    REQUIRE(std::signbit(round_trip(-0.0)));
    REQUIRE(round_trip(std::numeric_limits<double>::denorm_min()) == std::numeric_limits<double>::denorm_min());
    REQUIRE(round_trip(std::numeric_limits<float>::lowest()) == std::numeric_limits<float>::lowest());
    REQUIRE(round_trip(1.5L) == 1.5L);
}

TEST_CASE("serialize: a vector of doubles round-trips bit-exactly", "[serialize]") {
    std::vector<double> v{
        0.1, -2.5e300, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(), -0.0, 5e-324};
    const auto back = round_trip(v);
    REQUIRE(back.size() == v.size());
    REQUIRE(std::memcmp(back.data(), v.data(), v.size() * sizeof(double)) == 0);
}

TEST_CASE("serialize: enums and std::byte round-trip as their underlying integer", "[serialize]") {
    REQUIRE(round_trip(color::blue) == color::blue);
    REQUIRE(round_trip(minus_one) == minus_one);
    REQUIRE(round_trip(big) == big);
    REQUIRE(round_trip(static_cast<color>(77)) == static_cast<color>(77)); // not range-checked
    REQUIRE(round_trip(std::byte{0xab}) == std::byte{0xab});
    REQUIRE(round_trip(std::vector<color>{color::red, color::green}) == std::vector<color>{color::red, color::green});
    REQUIRE(round_trip(std::vector<std::byte>{std::byte{1}, std::byte{2}}) ==
            std::vector<std::byte>{std::byte{1}, std::byte{2}});
}

TEST_CASE("serialize: strings and sequences round-trip, empty ones included", "[serialize]") {
    REQUIRE(round_trip(std::string{}).empty());
    REQUIRE(round_trip(std::string("with\0nul", 8)) == std::string("with\0nul", 8));
    REQUIRE(round_trip(std::vector<int>{}).empty());
    REQUIRE(round_trip(std::vector<std::string>{"a", "", "ccc"}) == std::vector<std::string>{"a", "", "ccc"});
    REQUIRE(round_trip(std::vector<bool>{true, false, true}) == std::vector<bool>{true, false, true});
    REQUIRE(round_trip(std::array<int, 3>{1, -2, 3}) == std::array<int, 3>{1, -2, 3});
    REQUIRE(round_trip(std::array<std::string, 2>{"x", "y"}) == std::array<std::string, 2>{"x", "y"});
    REQUIRE(round_trip(std::array<int, 0>{}) == std::array<int, 0>{});
    REQUIRE(round_trip(std::vector<std::monostate>(5)).size() == 5);
    REQUIRE(round_trip(std::vector<empty_struct>(3)).size() == 3);
    REQUIRE(round_trip(std::vector<std::tuple<>>(2)).size() == 2);
}

TEST_CASE("serialize: pairs, tuples, optionals and variants round-trip", "[serialize]") {
    REQUIRE(round_trip(std::pair<int, std::string>{4, "four"}) == std::pair<int, std::string>{4, "four"});
    REQUIRE(round_trip(std::tuple<>{}) == std::tuple<>{});
    const std::tuple<char, std::uint64_t, float, std::string> t{'c', 1ull << 63, 2.5f, "s"};
    REQUIRE(round_trip(t) == t);
    REQUIRE(round_trip(std::optional<int>{}) == std::nullopt);
    REQUIRE(round_trip(std::optional<int>{0}) == 0);
    REQUIRE(round_trip(std::optional<std::optional<int>>{std::optional<int>{}}) ==
            std::optional<std::optional<int>>{std::optional<int>{}});
    using v = std::variant<std::monostate, point, std::string>;
    REQUIRE(round_trip(v{}) == v{});
    REQUIRE(round_trip(v{point{1, 2.0, "p"}}) == v{point{1, 2.0, "p"}});
    REQUIRE(round_trip(v{std::string("text")}) == v{std::string("text")});
}

TEST_CASE("serialize: maps and sets round-trip, empty ones included", "[serialize]") {
    const std::map<std::string, std::vector<std::optional<int>>> m{
        {"a", {1, std::nullopt, 3}}, {"", {}}, {"zz", {std::nullopt}}};
    REQUIRE(round_trip(m) == m);
    REQUIRE(round_trip(std::map<int, int>{}).empty());
    const std::unordered_map<int, std::string> um{{1, "one"}, {2, "two"}, {-3, ""}};
    REQUIRE(round_trip(um) == um);
    REQUIRE(round_trip(std::set<std::string>{"b", "a"}) == std::set<std::string>{"a", "b"});
    REQUIRE(round_trip(std::unordered_set<int>{5, 6, 7}) == std::unordered_set<int>{5, 6, 7});
    REQUIRE(round_trip(std::set<std::monostate>{std::monostate{}}).size() == 1);
}

TEST_CASE("serialize: durations round-trip with their representation", "[serialize]") {
    using namespace std::chrono_literals;
    REQUIRE(round_trip(1500ms) == 1500ms);
    REQUIRE(round_trip(std::chrono::nanoseconds::min()) == std::chrono::nanoseconds::min());
    REQUIRE(round_trip(std::chrono::duration<double>(0.25)) == std::chrono::duration<double>(0.25));
}

TEST_CASE("serialize: aggregates round-trip field by field", "[serialize]") {
    const nested n{
        {1, 2.5, "origin"}, {{3, 4.0, ""}, {-5, 1e9, "far"}}, std::map<std::string, int>{{"k", 1}}, {1, 2, 3}};
    REQUIRE(round_trip(n) == n);
    REQUIRE(round_trip(nested{}) == nested{});
    REQUIRE(round_trip(empty_struct{}) == empty_struct{});
    REQUIRE(encode_to_bytes(empty_struct{}).empty());
    const sixteen s{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    REQUIRE(round_trip(s) == s);
    REQUIRE(encode_to_bytes(s).size() == 16 * sizeof(int));
}

TEST_CASE("serialize: a type with offload_fields round-trips its private state", "[serialize]") {
    const account a("ada", -12345);
    REQUIRE(round_trip(a) == a);
    REQUIRE(round_trip(std::vector<account>{a, account{}}) == std::vector<account>{a, account{}});
}

TEST_CASE("serialize: a variant of an aggregate and a string round-trips", "[serialize]") {
    using v = std::variant<point, std::string>;
    REQUIRE(round_trip(v{point{7, -1.0, "seven"}}) == v{point{7, -1.0, "seven"}});
    REQUIRE(round_trip(v{std::string("str")}) == v{std::string("str")});
}

TEST_CASE("serialize: a 64 MiB byte vector round-trips intact", "[serialize]") {
    std::vector<std::uint8_t> big(64u << 20);
    std::uint32_t x = 12345;
    for (auto& b : big) {
        x = x * 1664525u + 1013904223u;
        b = static_cast<std::uint8_t>(x >> 24);
    }
    const auto before = fnv1a(big);
    const auto bytes = encode_to_bytes(big);
    REQUIRE(bytes.size() == big.size() + 4); // 2^26 takes a 4-byte varint
    const auto back = decode<std::vector<std::uint8_t>>(bytes);
    REQUIRE(fnv1a(back) == before);
}

TEST_CASE("serialize: arguments encode one after another and decode as a tuple", "[serialize]") {
    byte_writer w;
    offload::detail::encode_args(w, 42, std::string("x"), point{1, 1.0, "p"});
    byte_reader r(w.bytes());
    const auto args = offload::detail::decode_args<int, std::string, point>(r);
    REQUIRE(args == std::tuple<int, std::string, point>{42, "x", point{1, 1.0, "p"}});
    REQUIRE(r.remaining() == 0);
}

TEST_CASE("serialize: file descriptors are recorded beside the bytes and read back by index", "[serialize]") {
    byte_writer w;
    REQUIRE(w.add_fd(7) == 0);
    REQUIRE(w.add_fd(9) == 1);
    REQUIRE(w.fds() == std::vector<int>{7, 9});
    const std::vector<int> fds{7, 9};
    byte_reader r(std::span<const std::byte>{}, fds);
    REQUIRE(r.fd_at(1) == 9);
    REQUIRE_THROWS_AS(r.fd_at(2), serialization_error);
}

namespace {

// A byte_sink that moves its storage on every growth, as a remapped mailbox may.
class moving_sink final : public offload::byte_sink {
public:
    std::span<std::byte> grow(std::size_t bytes) override {
        ++grows;
        if (bytes <= storage.size()) return storage;
        std::vector<std::byte> bigger(std::max(bytes, storage.size() * 2) + 3);
        std::copy(storage.begin(), storage.end(), bigger.begin());
        storage.swap(bigger); // a new address: the writer must follow it
        return storage;
    }
    std::vector<std::byte> storage = std::vector<std::byte>(8);
    int grows = 0;
};

} // namespace

TEST_CASE("serialize: a byte_writer encodes in place into a byte_sink that grows and moves", "[serialize]") {
    moving_sink sink;
    byte_writer w(sink);
    const std::vector<std::uint8_t> big(100'000, 0xab);
    const point p{3, 2.5, "in place"};
    offload::detail::encode_args(w, 42, big, p, std::string(5000, 'z'));
    REQUIRE(sink.grows > 2);
    REQUIRE(w.bytes().data() == sink.storage.data()); // written where the sink holds it, no copy
    byte_reader r(w.bytes());
    const auto args = offload::detail::decode_args<int, std::vector<std::uint8_t>, point, std::string>(r);
    REQUIRE(std::get<0>(args) == 42);
    REQUIRE(std::get<1>(args) == big);
    REQUIRE(std::get<2>(args) == p);
    REQUIRE(std::get<3>(args) == std::string(5000, 'z'));
    REQUIRE(r.remaining() == 0);
    // The same bytes as an owning writer produces.
    byte_writer own;
    offload::detail::encode_args(own, 42, big, p, std::string(5000, 'z'));
    REQUIRE(std::equal(own.bytes().begin(), own.bytes().end(), w.bytes().begin(), w.bytes().end()));
    REQUIRE(w.take_bytes() == own.take_bytes());

    // reset() starts the message over in the same storage (a worker replacing a
    // half-written result with its exception).
    w.add_fd(5);
    w.reset();
    REQUIRE(w.size() == 0);
    REQUIRE(w.fds().empty());
    offload::detail::encode_args(w, std::string("again"));
    byte_reader again(w.bytes());
    REQUIRE(std::get<0>(offload::detail::decode_args<std::string>(again)) == "again");
}

TEST_CASE("serialize: a bulk vector decodes the same from aligned and unaligned bytes", "[serialize]") {
    const std::vector<std::uint64_t> v{1, 2, 0xffff'ffff'ffffull, 42};
    const auto bytes = encode_to_bytes(v);
    for (std::size_t shift = 0; shift < 8; ++shift) {
        INFO("shift " << shift);
        std::vector<std::byte> moved(shift + bytes.size());
        std::copy(bytes.begin(), bytes.end(), moved.begin() + static_cast<std::ptrdiff_t>(shift));
        REQUIRE(decode<std::vector<std::uint64_t>>(std::span<const std::byte>(moved).subspan(shift)) == v);
    }
}

// --- malformed input ------------------------------------------------------------------------

namespace {

template <class T>
void require_rejected(const std::vector<std::byte>& bytes) {
    REQUIRE_THROWS_AS(decode<T>(bytes), serialization_error);
}

template <class T>
void require_every_prefix_rejected(const T& value) {
    const auto bytes = encode_to_bytes(value);
    REQUIRE(decode<T>(bytes) == value);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        INFO("prefix length " << n << " of " << bytes.size());
        std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
        require_rejected<T>(prefix);
    }
}

} // namespace

TEST_CASE("serialize: every truncated prefix of an encoding is rejected", "[serialize]") {
    require_every_prefix_rejected(
        nested{{1, 2.5, "origin"}, {{3, 4.0, "x"}}, std::map<std::string, int>{{"k", 1}}, {1, 2, 3}});
    require_every_prefix_rejected(
        std::map<std::string, std::vector<std::optional<int>>>{{"a", {1, std::nullopt}}, {"bb", {}}});
    require_every_prefix_rejected(std::variant<point, std::string>{point{1, 2.0, "abc"}});
    require_every_prefix_rejected(std::tuple<std::int8_t, std::uint64_t, double, bool>{-1, 1ull << 40, 3.5, true});
    require_every_prefix_rejected(std::vector<std::monostate>(3));
    require_every_prefix_rejected(account("someone", 99));
    require_every_prefix_rejected(std::string(200, 'q')); // two-byte varint length
}

TEST_CASE("serialize: a huge claimed count is rejected before anything is allocated", "[serialize]") {
    // varint 2^60: 0x80 x8, 0x10
    const auto huge = bytes_of({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10});
    require_rejected<std::vector<std::uint8_t>>(huge);
    require_rejected<std::vector<double>>(huge);
    require_rejected<std::vector<std::string>>(huge);
    require_rejected<std::vector<std::monostate>>(huge);
    require_rejected<std::vector<empty_struct>>(huge);
    require_rejected<std::string>(huge);
    require_rejected<std::map<int, int>>(huge);
    require_rejected<std::unordered_map<std::string, int>>(huge);
    require_rejected<std::set<std::monostate>>(huge);
    require_rejected<std::unordered_set<int>>(huge);
    // Maximal varint (2^64 - 1) and a count just one element over the input.
    require_rejected<std::vector<std::uint8_t>>(bytes_of({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));
    require_rejected<std::vector<std::uint32_t>>(bytes_of({0x02, 1, 2, 3, 4, 5, 6, 7}));
    require_rejected<std::vector<std::string>>(bytes_of({0x03, 0x00, 0x00}));
}

TEST_CASE("serialize: a bool other than 0 or 1 is rejected", "[serialize]") {
    require_rejected<bool>(bytes_of({2}));
    require_rejected<bool>(bytes_of({0xff}));
    require_rejected<std::vector<bool>>(bytes_of({2, 1, 7}));
    REQUIRE(decode<bool>(bytes_of({1})));
}

TEST_CASE("serialize: an optional tag other than 0 or 1 is rejected", "[serialize]") {
    require_rejected<std::optional<std::uint8_t>>(bytes_of({2, 5}));
    require_rejected<std::optional<std::string>>(bytes_of({0x80}));
}

TEST_CASE("serialize: a variant index out of range is rejected", "[serialize]") {
    require_rejected<std::variant<std::uint8_t, std::string>>(bytes_of({2, 0}));
    require_rejected<std::variant<std::monostate>>(bytes_of({1}));
    require_rejected<std::variant<std::monostate>>(
        bytes_of({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));
}

TEST_CASE("serialize: trailing bytes after the top-level value are rejected", "[serialize]") {
    auto bytes = encode_to_bytes(point{1, 2.0, "x"});
    bytes.push_back(std::byte{0});
    require_rejected<point>(bytes);
    require_rejected<std::monostate>(bytes_of({0}));
    require_rejected<std::uint8_t>(bytes_of({1, 2}));
}

TEST_CASE("serialize: overlong and oversized varints are rejected", "[serialize]") {
    require_rejected<std::string>(bytes_of({0x80, 0x00}));       // 0 in two bytes
    require_rejected<std::string>(bytes_of({0x81, 0x80, 0x00, 'a'})); // 1 in three bytes
    require_rejected<std::vector<int>>(bytes_of({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}));
    require_rejected<std::vector<int>>(bytes_of({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}));
    REQUIRE(decode<std::string>(bytes_of({0x01, 'a'})) == "a");
}

TEST_CASE("serialize: repeated keys and bad padding are rejected", "[serialize]") {
    require_rejected<std::map<std::uint8_t, std::uint8_t>>(bytes_of({2, 1, 10, 1, 11}));
    require_rejected<std::set<std::uint8_t>>(bytes_of({2, 4, 4}));
    require_rejected<std::unordered_set<std::uint8_t>>(bytes_of({2, 4, 4}));
    require_rejected<std::vector<std::monostate>>(bytes_of({1, 1}));
}

TEST_CASE("serialize: errors name the type and the byte offset", "[serialize]") {
    try {
        (void)decode<std::vector<std::string>>(bytes_of({2, 1, 'a', 9}));
        FAIL("no exception");
    } catch (const serialization_error& e) {
        const std::string what = e.what();
        INFO(what);
        REQUIRE(what.find("offset 3") != std::string::npos);
        REQUIRE(what.find("string") != std::string::npos);
    }
}
