// Tests for offload/codec.hpp: the customization point as a user sees it. A
// type of the user's gets a codec written with public names only (codec<T>,
// byte_writer, byte_reader, serializable), and then crosses the process
// boundary like any standard type, alone and inside standard containers.
#include <offload/codec.hpp>

#include <offload/process_pool.hpp>
#include <offload/run.hpp>
#include <offload/serialize.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace shop {

/// Money in cents with a currency; not an aggregate (a constructor checks it),
/// so it needs a codec of its own.
class money {
public:
    money() = default;
    money(std::int64_t cents, std::string currency) : cents_(cents), currency_(std::move(currency)) {
        if (currency_.size() != 3) throw std::invalid_argument("currency codes have three letters");
    }
    std::int64_t cents() const { return cents_; }
    const std::string& currency() const { return currency_; }
    bool operator==(const money&) const = default;

private:
    std::int64_t cents_ = 0;
    std::string currency_ = "EUR";
};

money add_tax(money m, int percent) { return money(m.cents() * (100 + percent) / 100, m.currency()); }

} // namespace shop

// The codec: only public names of offload.
template <>
struct offload::codec<shop::money> {
    static constexpr std::size_t min_size = 8 + 1 + 3;
    static void encode(offload::byte_writer& w, const shop::money& m) {
        w.write_fixed(m.cents());
        w.write_varint(m.currency().size());
        w.write_bytes(m.currency().data(), m.currency().size());
    }
    static shop::money decode(offload::byte_reader& r) {
        auto cents = r.read_fixed<std::int64_t>("money");
        auto n = r.read_count(1, "money");
        std::string currency(n, '\0');
        r.read_bytes(currency.data(), n, "money");
        if (n != 3) r.fail("money", "a currency code has three letters");
        return shop::money(cents, std::move(currency));
    }
};

static_assert(offload::serializable<shop::money>);
static_assert(offload::serializable<std::vector<shop::money>>);
static_assert(offload::serializable<std::map<std::string, shop::money>>);

TEST_CASE("codec: a user codec written with public names round-trips", "[codec]") {
    shop::money m(1999, "CHF");
    offload::byte_writer w;
    offload::codec<shop::money>::encode(w, m);
    CHECK(w.size() == 8 + 1 + 3);
    offload::byte_reader r(w.bytes());
    CHECK(offload::codec<shop::money>::decode(r) == m);
    r.expect_end("money");
}

TEST_CASE("codec: a user codec composes with standard containers", "[codec]") {
    std::vector<shop::money> basket{{100, "EUR"}, {250, "USD"}, {7, "JPY"}};
    offload::byte_writer w;
    offload::codec<std::vector<shop::money>>::encode(w, basket);
    offload::byte_reader r(w.bytes());
    CHECK(offload::codec<std::vector<shop::money>>::decode(r) == basket);
}

TEST_CASE("codec: malformed input for a user codec is a serialization_error that says where", "[codec]") {
    offload::byte_writer w;
    w.write_fixed(std::int64_t{5});
    w.write_varint(2);
    w.write_bytes("EU", 2);
    offload::byte_reader r(w.bytes());
    try {
        (void)offload::codec<shop::money>::decode(r);
        FAIL("a two-letter currency decoded");
    } catch (const offload::serialization_error& e) {
        CHECK(std::string(e.what()).find("money") != std::string::npos);
        CHECK(std::string(e.what()).find("three letters") != std::string::npos);
    }
}

TEST_CASE("codec: a user type crosses the process boundary as argument and result", "[codec][process_pool]") {
    offload::process_pool pool({.workers = 1, .start = offload::start_method::fork});
    auto taxed = offload::run([](offload::process_pool& p) -> offload::task<shop::money> {
        co_return co_await offload::run_in_executor(p, &shop::add_tax, shop::money(1000, "EUR"), 20);
    }(pool));
    CHECK(taxed == shop::money(1200, "EUR"));
}
