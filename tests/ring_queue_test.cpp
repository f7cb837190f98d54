// Tests for offload/detail/base/ring_queue.hpp: the loop's ready queue, a FIFO
// of fixed-size chunks that grows without moving items and reuses the chunks
// its head leaves.
#include <offload/detail/base/ring_queue.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <deque>
#include <memory>
#include <random>
#include <string>

using offload::detail::ring_queue;

namespace {
// Counts live instances, so leaks and double destruction show.
struct tracked {
    static inline int live = 0;
    std::unique_ptr<int> v;
    explicit tracked(int x) : v(std::make_unique<int>(x)) { ++live; }
    tracked(tracked&& o) noexcept : v(std::move(o.v)) { ++live; }
    ~tracked() { --live; }
};
constexpr std::size_t slots = ring_queue<int>::chunk_slots;
} // namespace

TEST_CASE("ring_queue: FIFO order across many chunks", "[ring_queue]") {
    ring_queue<std::string> q;
    CHECK(q.empty());
    const std::size_t n = 5 * slots + 17;
    for (std::size_t i = 0; i < n; ++i) q.emplace_back(std::to_string(i));
    CHECK(q.size() == n);
    for (std::size_t i = 0; i < n; ++i) {
        REQUIRE(q.front() == std::to_string(i));
        q.pop_front();
    }
    CHECK(q.empty());
}

TEST_CASE("ring_queue: matches a std::deque under random pushes and pops", "[ring_queue]") {
    ring_queue<int> q;
    std::deque<int> ref;
    std::mt19937 rng(7);
    int next = 0;
    for (int step = 0; step < 200'000; ++step) {
        // Phases that grow and shrink the queue across chunk boundaries.
        const bool grow = (step / 5000) % 2 == 0;
        if (ref.empty() || std::uniform_int_distribution<int>(0, 99)(rng) < (grow ? 70 : 30)) {
            q.emplace_back(next);
            ref.push_back(next++);
        } else {
            REQUIRE(q.front() == ref.front());
            q.pop_front();
            ref.pop_front();
        }
        REQUIRE(q.size() == ref.size());
    }
    while (!ref.empty()) {
        REQUIRE(q.front() == ref.front());
        q.pop_front();
        ref.pop_front();
    }
    CHECK(q.empty());
}

TEST_CASE("ring_queue: chunks are reused, not allocated again", "[ring_queue]") {
    ring_queue<int> q;
    for (int round = 0; round < 5; ++round) {
        for (std::size_t i = 0; i < 4 * slots; ++i) q.emplace_back(static_cast<int>(i));
        while (!q.empty()) q.pop_front();
    }
    CHECK(q.chunks() == 4); // the peak, whatever the number of rounds
    // A steady trickle (one in, one out) stays in one chunk.
    ring_queue<int> t;
    for (int i = 0; i < 10'000; ++i) {
        t.emplace_back(i);
        REQUIRE(t.front() == i);
        t.pop_front();
    }
    CHECK(t.chunks() == 1);
}

TEST_CASE("ring_queue: items left at destruction are destroyed exactly once", "[ring_queue]") {
    {
        ring_queue<tracked> q;
        for (int i = 0; i < static_cast<int>(3 * slots); ++i) q.emplace_back(i);
        for (std::size_t i = 0; i < slots + 5; ++i) q.pop_front();
        CHECK(tracked::live == static_cast<int>(2 * slots - 5));
        CHECK(*q.front().v == static_cast<int>(slots + 5));
    }
    CHECK(tracked::live == 0);
}
