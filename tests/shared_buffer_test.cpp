#include <offload/shared_buffer.hpp>

#include <offload/process_pool.hpp>
#include <offload/run.hpp>

#include "fd_count.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace offload;

namespace {

static_assert(serializable<shared_buffer>);
static_assert(serializable<std::vector<shared_buffer>>);
static_assert(serializable<std::optional<shared_buffer>>);

/// Lines of /proc/self/maps that map one of our segments.
std::size_t buffer_mappings() {
    std::ifstream f("/proc/self/maps");
    std::size_t n = 0;
    for (std::string line; std::getline(f, line);)
        if (line.find("memfd:offload-buffer") != std::string::npos) ++n;
    return n;
}

// A cheap hash of whole 64-bit words (sizes here are multiples of 8).
std::uint64_t hash_words(std::span<const std::uint64_t> words) {
    std::uint64_t h = 1469598103934665603ull;
    for (std::uint64_t w : words) h = (h ^ w) * 1099511628211ull;
    return h;
}
std::uint64_t pattern(std::uint64_t seed, std::size_t i) { return (seed + i) * 0x9e3779b97f4a7c15ull; }
std::uint64_t pattern_hash(std::uint64_t seed, std::size_t count) {
    std::uint64_t h = 1469598103934665603ull;
    for (std::size_t i = 0; i < count; ++i) h = (h ^ pattern(seed, i)) * 1099511628211ull;
    return h;
}

// --- what the workers run ------------------------------------------------------------

/// Writes the pattern into the caller's buffer; returns the hash the worker sees.
std::uint64_t fill(shared_buffer buf, std::uint64_t seed) {
    auto words = buf.as_span<std::uint64_t>();
    for (std::size_t i = 0; i < words.size(); ++i) words[i] = pattern(seed, i);
    return hash_words(words);
}

/// A buffer the worker creates and fills.
shared_buffer make_filled(std::size_t bytes, std::uint64_t seed) {
    shared_buffer buf(bytes);
    fill(buf, seed);
    return buf;
}

/// Gives the argument back: the parent gets a second handle on its own memory.
shared_buffer echo(shared_buffer buf) { return buf; }

/// Encodes and decodes in this process, passing the recorded fds as the transport would.
shared_buffer round_trip(const shared_buffer& buf) {
    byte_writer w;
    codec<shared_buffer>::encode(w, buf);
    return detail::decode<shared_buffer>(w.bytes(), w.fds());
}

} // namespace

TEST_CASE("shared_buffer: a new buffer has its size, is zero-filled, and views as spans", "[shared_buffer]") {
    shared_buffer buf(4096 + 8);
    REQUIRE(buf.size() == 4104);
    REQUIRE(buf.data() != nullptr);
    CHECK(static_cast<bool>(buf));
    CHECK(buf.bytes().size() == 4104);
    bool zero = true;
    for (std::byte b : buf.bytes()) zero = zero && b == std::byte{0};
    CHECK(zero);
    auto ints = buf.as_span<std::uint32_t>();
    CHECK(ints.size() == 1026);
    ints[3] = 0xdeadbeef;
    const shared_buffer& cbuf = buf;
    CHECK(cbuf.as_span<std::uint32_t>()[3] == 0xdeadbeef);
    CHECK(cbuf.bytes().data() == buf.data());
    CHECK(buf.as_span<std::uint64_t>().size() == 513);
    using five = std::array<std::byte, 5>; // 4104 is no multiple of 5 or 7
    using seven = std::array<std::byte, 7>;
    CHECK_THROWS_AS(buf.as_span<five>(), std::invalid_argument);
    CHECK_THROWS_AS(cbuf.as_span<seven>(), std::invalid_argument);
}

TEST_CASE("shared_buffer: size 0 is allowed and an empty buffer has no segment", "[shared_buffer]") {
    shared_buffer zero(0);
    CHECK(zero.size() == 0);
    CHECK(zero.bytes().empty());
    CHECK(zero.as_span<std::uint64_t>().empty());
    CHECK(static_cast<bool>(zero));
    CHECK(zero.native_handle() >= 0);

    shared_buffer none;
    CHECK_FALSE(static_cast<bool>(none));
    CHECK(none.size() == 0);
    CHECK(none.data() == nullptr);
    CHECK(none.native_handle() == -1);
}

TEST_CASE("shared_buffer: copies share the same memory", "[shared_buffer]") {
    shared_buffer a(64);
    shared_buffer b = a;
    shared_buffer c(8);
    c = b;
    CHECK(b.data() == a.data());
    CHECK(c.data() == a.data());
    a.as_span<std::uint8_t>()[5] = 42;
    CHECK(std::to_integer<int>(c.bytes()[5]) == 42);
}

TEST_CASE("shared_buffer: moving leaves the source empty", "[shared_buffer]") {
    shared_buffer a(128);
    std::byte* p = a.data();
    shared_buffer b = std::move(a);
    CHECK(b.data() == p);
    CHECK(b.size() == 128);
    CHECK_FALSE(static_cast<bool>(a)); // NOLINT(bugprone-use-after-move): moved-from state is specified
    CHECK(a.size() == 0);
    shared_buffer c;
    c = std::move(b);
    CHECK(c.data() == p);
    CHECK(b.data() == nullptr); // NOLINT(bugprone-use-after-move)
}

TEST_CASE("shared_buffer: the memfd is gone once the last copy dies", "[shared_buffer]") {
    const std::size_t fds = test::fd_count();
    const std::size_t maps = buffer_mappings();
    {
        shared_buffer a(1 << 20);
        CHECK(test::fd_count() == fds + 1);
        CHECK(buffer_mappings() == maps + 1);
        std::vector<shared_buffer> copies(5, a);
        shared_buffer decoded = round_trip(a); // its own descriptor and mapping
        CHECK(test::fd_count() == fds + 2);
        CHECK(buffer_mappings() == maps + 2);
        a = shared_buffer();
        copies.clear();
        CHECK(test::fd_count() == fds + 1); // `decoded` still holds the segment
    }
    CHECK(test::fd_count() == fds);
    CHECK(buffer_mappings() == maps);
}

TEST_CASE("shared_buffer: the codec round-trips a handle to the same memory", "[shared_buffer][codec]") {
    shared_buffer a(4096);
    shared_buffer b = round_trip(a);
    CHECK(b.size() == a.size());
    CHECK(b.native_handle() != a.native_handle()); // decode dup()s what it keeps
    CHECK(b.data() != a.data());                   // a second mapping...
    a.as_span<std::uint32_t>()[100] = 7;
    CHECK(b.as_span<std::uint32_t>()[100] == 7); // ...of the same bytes
    b.as_span<std::uint32_t>()[0] = 9;
    CHECK(a.as_span<std::uint32_t>()[0] == 9);

    shared_buffer empty = round_trip(shared_buffer());
    CHECK_FALSE(static_cast<bool>(empty));
    shared_buffer zero = round_trip(shared_buffer(0));
    CHECK(static_cast<bool>(zero));
    CHECK(zero.size() == 0);

    // Inside containers: each buffer records its own fd.
    std::vector<shared_buffer> several{shared_buffer(8), shared_buffer(16)};
    byte_writer w;
    codec<std::vector<shared_buffer>>::encode(w, several);
    CHECK(w.fds().size() == 2);
    auto back = detail::decode<std::vector<shared_buffer>>(w.bytes(), w.fds());
    REQUIRE(back.size() == 2);
    CHECK(back[1].size() == 16);
    several[1].as_span<std::uint8_t>()[15] = 3;
    CHECK(std::to_integer<int>(back[1].bytes()[15]) == 3);
}

TEST_CASE("shared_buffer: malformed input is a serialization_error", "[shared_buffer][codec]") {
    const std::size_t fds = test::fd_count();
    shared_buffer buf(4096);
    const int fd = buf.native_handle();
    auto message = [](std::uint8_t tag, std::uint64_t index, std::uint64_t size) {
        byte_writer w;
        w.write_fixed(tag);
        w.write_varint(index);
        w.write_varint(size);
        return w.take_bytes();
    };
    const std::vector<int> one{fd};

    SECTION("a well-formed message decodes") {
        CHECK(detail::decode<shared_buffer>(message(1, 0, 4096), one).size() == 4096);
        CHECK(detail::decode<shared_buffer>(message(1, 0, 100), one).size() == 100);
    }
    SECTION("an fd index with no fd behind it") {
        CHECK_THROWS_AS(detail::decode<shared_buffer>(message(1, 0, 16), {}), serialization_error);
        CHECK_THROWS_AS(detail::decode<shared_buffer>(message(1, 1, 16), one), serialization_error);
        CHECK_THROWS_AS(detail::decode<shared_buffer>(message(1, std::uint64_t(1) << 40, 16), one),
                        serialization_error);
    }
    SECTION("a size larger than the memfd") {
        CHECK_THROWS_AS(detail::decode<shared_buffer>(message(1, 0, 4097), one), serialization_error);
        CHECK_THROWS_AS(detail::decode<shared_buffer>(message(1, 0, ~std::uint64_t{0}), one), serialization_error);
    }
    SECTION("a bad tag, a truncated message, trailing bytes") {
        CHECK_THROWS_AS(detail::decode<shared_buffer>(message(2, 0, 16), one), serialization_error);
        auto m = message(1, 0, 16);
        m.pop_back();
        CHECK_THROWS_AS(detail::decode<shared_buffer>(m, one), serialization_error);
        auto t = message(1, 0, 16);
        t.push_back(std::byte{0});
        CHECK_THROWS_AS(detail::decode<shared_buffer>(t, one), serialization_error);
    }
    SECTION("a descriptor that is not a sealed memfd") {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        const std::vector<int> pipe_fd{p[0]};
        CHECK_THROWS_AS(detail::decode<shared_buffer>(message(1, 0, 0), pipe_fd), serialization_error);
        ::close(p[0]);
        ::close(p[1]);
        const int unsealed = ::memfd_create("offload-test", MFD_CLOEXEC);
        REQUIRE(unsealed >= 0);
        REQUIRE(::ftruncate(unsealed, 4096) == 0);
        const std::vector<int> u{unsealed};
        CHECK_THROWS_AS(detail::decode<shared_buffer>(message(1, 0, 4096), u), serialization_error);
        ::close(unsealed);
    }
    buf = shared_buffer();
    CHECK(test::fd_count() == fds); // nothing kept from a failed decode
}

TEST_CASE("shared_buffer: a worker process writes the caller's buffer and returns new ones",
          "[shared_buffer][process_pool]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    process_pool pool({.workers = 1, .start = how});
    run([](process_pool& pool) -> task<> {
        // Warm up first, so the pool's own descriptors are all open before the baseline.
        std::uint64_t warm = co_await run_in_executor(pool, fill, shared_buffer(64), std::uint64_t{1});
        CHECK(warm == pattern_hash(1, 8));
        const std::size_t fds = test::fd_count();
        const std::size_t maps = buffer_mappings();
        {
            constexpr std::size_t big = std::size_t(64) << 20;
            constexpr std::size_t words = big / sizeof(std::uint64_t);
            shared_buffer buf(big);
            const std::uint64_t seen = co_await run_in_executor(pool, fill, buf, std::uint64_t{7});
            const std::uint64_t want = pattern_hash(7, words);
            CHECK(seen == want);
            CHECK(hash_words(buf.as_span<const std::uint64_t>()) == want); // the very bytes the worker wrote
            CHECK(pool.stats().bytes_sent < 4096);                          // a handle, not 64 MiB

            shared_buffer made = co_await run_in_executor(pool, make_filled, std::size_t(1) << 20, std::uint64_t{3});
            REQUIRE(made.size() == std::size_t(1) << 20);
            CHECK(hash_words(made.as_span<const std::uint64_t>()) == pattern_hash(3, made.size() / 8));

            shared_buffer again = co_await run_in_executor(pool, echo, buf);
            CHECK(again.size() == big);
            buf.as_span<std::uint64_t>()[0] = 11;
            CHECK(again.as_span<std::uint64_t>()[0] == 11);

            shared_buffer nothing = co_await run_in_executor(pool, echo, shared_buffer());
            CHECK_FALSE(static_cast<bool>(nothing));
        }
        CHECK(test::fd_count() == fds);
        CHECK(buffer_mappings() == maps);
    }(pool));
    CHECK(pool.stats().failed == 0);
}
