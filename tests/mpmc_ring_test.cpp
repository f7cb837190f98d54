// Tests for offload/detail/base/mpmc_ring.hpp: capacity, full and empty, FIFO order,
// many laps around the ring, empty_hint, and a multi-producer multi-consumer
// run (also under TSan) in which every item arrives exactly once.
#include <offload/detail/base/mpmc_ring.hpp>

#include <stdexcept>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

using offload::detail::mpmc_ring;

namespace {

/// Pushes until the ring refuses; returns how many it took.
std::size_t fill(mpmc_ring<int>& r, std::vector<int>& items) {
    std::size_t n = 0;
    while (n < items.size() && r.try_push(&items[n])) ++n;
    return n;
}

struct item {
    std::uint32_t producer = 0;
    std::uint32_t seq = 0;   // position in its producer's push order
    std::atomic<int> received{0};
};

/// `producers` threads each push `per_producer` items through a ring of
/// `capacity`; `consumers` threads pop until all have arrived. Checks that each
/// item arrived exactly once and that every consumer saw each producer's items
/// in push order (a consumer's pops are ordered, and so are a producer's pushes).
void run_mpmc(std::size_t capacity, int producers, int consumers, int per_producer) {
    mpmc_ring<item> ring(capacity);
    const auto total = static_cast<std::size_t>(producers) * static_cast<std::size_t>(per_producer);
    std::vector<item> items(total);
    for (std::size_t i = 0; i < total; ++i) {
        items[i].producer = static_cast<std::uint32_t>(i / static_cast<std::size_t>(per_producer));
        items[i].seq = static_cast<std::uint32_t>(i % static_cast<std::size_t>(per_producer));
    }

    std::atomic<std::size_t> popped{0};
    std::atomic<int> order_violations{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
            item* mine = items.data() + static_cast<std::size_t>(p) * static_cast<std::size_t>(per_producer);
            for (int i = 0; i < per_producer; ++i)
                while (!ring.try_push(&mine[i])) std::this_thread::yield();
        });
    }
    for (int c = 0; c < consumers; ++c) {
        threads.emplace_back([&] {
            while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
            std::vector<std::int64_t> last_seq(static_cast<std::size_t>(producers), -1);
            while (popped.load(std::memory_order_relaxed) < total) {
                item* it = ring.try_pop();
                if (!it) {
                    std::this_thread::yield();
                    continue;
                }
                it->received.fetch_add(1, std::memory_order_relaxed);
                auto& last = last_seq[it->producer];
                if (static_cast<std::int64_t>(it->seq) <= last) order_violations.fetch_add(1);
                last = it->seq;
                popped.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    go.store(true, std::memory_order_release);
    for (auto& t : threads) t.join();

    REQUIRE(popped.load() == total);
    REQUIRE(order_violations.load() == 0);
    std::size_t wrong = 0;
    for (auto& it : items)
        if (it.received.load() != 1) ++wrong;
    REQUIRE(wrong == 0);
    REQUIRE(ring.try_pop() == nullptr);
    REQUIRE(ring.empty_hint());
}

} // namespace

TEST_CASE("mpmc_ring: a ring of N cells holds exactly N items", "[mpmc_ring]") {
    // The constructor takes a power of two and does not round: capacity is what was asked.
    for (std::size_t cap : {2u, 4u, 8u, 64u, 4096u}) {
        CAPTURE(cap);
        mpmc_ring<int> r(cap);
        std::vector<int> items(cap + 3);
        REQUIRE(fill(r, items) == cap);
        int extra = 0;
        REQUIRE_FALSE(r.try_push(&extra));
        REQUIRE_FALSE(r.try_push(&extra)); // still full: a failed push changed nothing
        // One pop frees exactly one cell.
        REQUIRE(r.try_pop() == &items[0]);
        REQUIRE(r.try_push(&extra));
        REQUIRE_FALSE(r.try_push(&extra));
    }
}

TEST_CASE("mpmc_ring: try_pop on an empty ring returns nullptr and changes nothing", "[mpmc_ring]") {
    mpmc_ring<int> r(4);
    REQUIRE(r.try_pop() == nullptr);
    REQUIRE(r.try_pop() == nullptr);
    int a = 1;
    REQUIRE(r.try_push(&a));
    REQUIRE(r.try_pop() == &a);
    REQUIRE(r.try_pop() == nullptr);
    // A pop that failed on empty does not use up a slot: all 4 still fit.
    std::vector<int> items(4);
    REQUIRE(fill(r, items) == 4);
}

TEST_CASE("mpmc_ring: items come out in the order they went in (one thread)", "[mpmc_ring]") {
    mpmc_ring<int> r(8);
    std::vector<int> items(8);
    REQUIRE(fill(r, items) == 8);
    for (auto& v : items) REQUIRE(r.try_pop() == &v);
    REQUIRE(r.try_pop() == nullptr);
}

TEST_CASE("mpmc_ring: the same pointer may be queued more than once", "[mpmc_ring]") {
    mpmc_ring<int> r(4);
    int a = 0, b = 0;
    REQUIRE(r.try_push(&a));
    REQUIRE(r.try_push(&b));
    REQUIRE(r.try_push(&a));
    REQUIRE(r.try_pop() == &a);
    REQUIRE(r.try_pop() == &b);
    REQUIRE(r.try_pop() == &a);
    REQUIRE(r.try_pop() == nullptr);
}

TEST_CASE("mpmc_ring: FIFO order and fullness hold over thousands of laps", "[mpmc_ring]") {
    constexpr std::size_t cap = 4;
    mpmc_ring<int> r(cap);
    std::vector<int> items(64);
    std::size_t next_in = 0, next_out = 0, queued = 0;
    // Batches of 1..cap pushes then 1..cap pops, in a pattern that leaves the
    // ring at every fill level and at every offset in its cells.
    for (std::size_t round = 0; round < 20'000; ++round) {
        std::size_t pushes = 1 + round % cap, pops = 1 + (round / 3) % cap;
        for (std::size_t i = 0; i < pushes; ++i) {
            bool ok = r.try_push(&items[next_in % items.size()]);
            REQUIRE(ok == (queued < cap));
            if (ok) {
                ++next_in;
                ++queued;
            }
        }
        for (std::size_t i = 0; i < pops; ++i) {
            int* v = r.try_pop();
            if (queued == 0) {
                REQUIRE(v == nullptr);
                continue;
            }
            REQUIRE(v == &items[next_out % items.size()]);
            ++next_out;
            --queued;
        }
        REQUIRE(r.empty_hint() == (queued == 0));
    }
    REQUIRE(next_out > 20'000 * 2); // many laps of a 4-cell ring
}

TEST_CASE("mpmc_ring: empty_hint follows pushes and pops when quiescent", "[mpmc_ring]") {
    mpmc_ring<int> r(2);
    int a = 0, b = 0;
    REQUIRE(r.empty_hint());
    REQUIRE(r.try_push(&a));
    REQUIRE_FALSE(r.empty_hint());
    REQUIRE(r.try_push(&b));
    REQUIRE_FALSE(r.try_push(&b));
    REQUIRE_FALSE(r.empty_hint()); // full is not empty
    REQUIRE(r.try_pop() == &a);
    REQUIRE_FALSE(r.empty_hint());
    REQUIRE(r.try_pop() == &b);
    REQUIRE(r.empty_hint());
    REQUIRE(r.try_pop() == nullptr);
    REQUIRE(r.empty_hint()); // a failed pop does not move it
}

TEST_CASE("mpmc_ring: the thread pool's ring size works", "[mpmc_ring]") {
    // thread_pool uses mpmc_ring<thread_call>{4096}; fill it, drain it, twice.
    mpmc_ring<int> r(4096);
    std::vector<int> items(4096);
    for (int lap = 0; lap < 2; ++lap) {
        REQUIRE(fill(r, items) == 4096);
        int extra = 0;
        REQUIRE_FALSE(r.try_push(&extra));
        for (auto& v : items) REQUIRE(r.try_pop() == &v);
        REQUIRE(r.try_pop() == nullptr);
    }
}

TEST_CASE("mpmc_ring: one thread pushes while another pops, in order", "[mpmc_ring]") { run_mpmc(8, 1, 1, 100'000); }

TEST_CASE("mpmc_ring: 4 producers and 4 consumers pass every item exactly once", "[mpmc_ring]") {
    // 200k items per producer through a small ring, so it is often full and often
    // empty and wraps thousands of times.
    run_mpmc(16, 4, 4, 200'000);
}

TEST_CASE("mpmc_ring: 4 producers and 4 consumers through a 2-cell ring", "[mpmc_ring]") { run_mpmc(2, 4, 4, 10'000); }

TEST_CASE("mpmc_ring: stress, 4 producers x 4 consumers x 1M items", "[mpmc_ring][.stress]") {
    run_mpmc(64, 4, 4, 1'000'000);
    run_mpmc(2, 4, 4, 200'000);
}

TEST_CASE("mpmc_ring: a capacity that is not a power of two of at least 2 is refused", "[mpmc_ring]") {
    // With one cell, a pushed cell's seq (pos + 1) equals the next push
    // position, so a second push would overwrite the first item and a later
    // pop would spin forever: Vyukov's queue needs >= 2 cells.
    REQUIRE_THROWS_AS(mpmc_ring<int>(0), std::invalid_argument);
    REQUIRE_THROWS_AS(mpmc_ring<int>(1), std::invalid_argument);
    REQUIRE_THROWS_AS(mpmc_ring<int>(3), std::invalid_argument);
    REQUIRE_THROWS_AS(mpmc_ring<int>(6), std::invalid_argument);
    mpmc_ring<int> r(2);
    int a = 1, b = 2, c = 3;
    REQUIRE(r.try_push(&a));
    REQUIRE(r.try_push(&b));
    REQUIRE_FALSE(r.try_push(&c));
}
