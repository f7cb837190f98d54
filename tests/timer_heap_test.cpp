// Tests for offload/detail/base/timer_heap.hpp: pop order by deadline, FIFO among
// equal deadlines, erase anywhere (top, bottom, middle, with sift up or down),
// the queued()/index bookkeeping, and a randomized run against a std::set.
#include <offload/detail/base/timer_heap.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <tuple>
#include <vector>

using offload::detail::timer_heap;
using offload::detail::timer_node;
using clock_type = offload::detail::clock;

namespace {

struct test_timer final : timer_node {
    int id = 0;
    int fired = 0;
    void fire() override { ++fired; }
};

clock_type::time_point at(int ms) { return clock_type::time_point{} + std::chrono::milliseconds(ms); }

/// `deadlines.size()` timers with ids 0, 1, ... (stable addresses).
std::vector<std::unique_ptr<test_timer>> make_timers(const std::vector<int>& deadlines) {
    std::vector<std::unique_ptr<test_timer>> out;
    for (std::size_t i = 0; i < deadlines.size(); ++i) {
        auto t = std::make_unique<test_timer>();
        t->id = static_cast<int>(i);
        t->deadline = at(deadlines[i]);
        out.push_back(std::move(t));
    }
    return out;
}

bool before(const timer_node* a, const timer_node* b) {
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

/// Checks, through the nodes' own index fields, that the queued nodes fill
/// slots 0..size()-1 exactly once, that no parent comes after its child, and
/// that top() is slot 0. Unqueued nodes must say so.
void check_heap(const timer_heap& h, const std::vector<std::unique_ptr<test_timer>>& all) {
    std::vector<const timer_node*> slots(h.size(), nullptr);
    std::size_t queued = 0;
    for (const auto& t : all) {
        if (!t->queued()) {
            REQUIRE(t->index == timer_node::not_queued);
            continue;
        }
        ++queued;
        REQUIRE(t->index < h.size());
        REQUIRE(slots[t->index] == nullptr); // two nodes claim the same slot
        slots[t->index] = t.get();
    }
    REQUIRE(queued == h.size());
    for (std::size_t i = 1; i < slots.size(); ++i) {
        CAPTURE(i);
        REQUIRE_FALSE(before(slots[i], slots[(i - 1) / 2]));
    }
    if (!slots.empty()) REQUIRE(h.top() == slots[0]);
}

std::vector<int> drain_ids(timer_heap& h) {
    std::vector<int> ids;
    while (!h.empty()) {
        auto* n = h.pop();
        REQUIRE_FALSE(n->queued());
        ids.push_back(static_cast<test_timer*>(n)->id);
    }
    return ids;
}

} // namespace

TEST_CASE("timer_heap: a new heap is empty and a new node is not queued", "[timer_heap]") {
    timer_heap h;
    REQUIRE(h.empty());
    REQUIRE(h.size() == 0);
    test_timer t;
    REQUIRE_FALSE(t.queued());
    REQUIRE(t.index == timer_node::not_queued);
}

TEST_CASE("timer_heap: pop returns timers in deadline order", "[timer_heap]") {
    auto ts = make_timers({50, 10, 40, 30, 0, 20, 60, 5});
    timer_heap h;
    for (auto& t : ts) {
        h.push(t.get());
        REQUIRE(t->queued());
        check_heap(h, ts);
    }
    REQUIRE(h.size() == 8);
    REQUIRE(h.top() == ts[4].get());
    REQUIRE(drain_ids(h) == std::vector<int>{4, 7, 1, 5, 3, 2, 0, 6});
    REQUIRE(h.empty());
    check_heap(h, ts);
    for (auto& t : ts) REQUIRE(t->fired == 0); // the heap never fires anything itself
}

TEST_CASE("timer_heap: timers with equal deadlines pop in push order", "[timer_heap]") {
    // Mixed in with other deadlines, so ties meet during sift-down as well.
    auto ts = make_timers({7, 7, 3, 7, 3, 7, 1, 7, 3, 7});
    timer_heap h;
    for (auto& t : ts) h.push(t.get());
    REQUIRE(drain_ids(h) == std::vector<int>{6, 2, 4, 8, 0, 1, 3, 5, 7, 9});
}

TEST_CASE("timer_heap: push numbers nodes in increasing order", "[timer_heap]") {
    auto ts = make_timers({5, 5, 5});
    timer_heap h;
    for (auto& t : ts) h.push(t.get());
    REQUIRE(ts[0]->seq < ts[1]->seq);
    REQUIRE(ts[1]->seq < ts[2]->seq);
}

TEST_CASE("timer_heap: a re-pushed timer goes behind others with the same deadline", "[timer_heap]") {
    auto ts = make_timers({5, 5, 5});
    timer_heap h;
    for (auto& t : ts) h.push(t.get());
    REQUIRE(h.pop() == ts[0].get());
    h.push(ts[0].get()); // same deadline, now the newest
    REQUIRE(drain_ids(h) == std::vector<int>{1, 2, 0});
    // And one erased then re-pushed, likewise.
    for (auto& t : ts) h.push(t.get());
    h.erase(ts[1].get());
    h.push(ts[1].get());
    REQUIRE(drain_ids(h) == std::vector<int>{0, 2, 1});
}

TEST_CASE("timer_heap: erase of the top, the last slot and a middle slot", "[timer_heap]") {
    auto ts = make_timers({10, 20, 30, 40, 50, 60, 70});
    timer_heap h;
    for (auto& t : ts) h.push(t.get());

    SECTION("top") {
        h.erase(ts[0].get());
        REQUIRE_FALSE(ts[0]->queued());
        check_heap(h, ts);
        REQUIRE(drain_ids(h) == std::vector<int>{1, 2, 3, 4, 5, 6});
    }
    SECTION("last slot") {
        auto* last = ts[6].get();
        REQUIRE(last->index == h.size() - 1); // pushed in order: no sifting
        h.erase(last);
        REQUIRE_FALSE(last->queued());
        check_heap(h, ts);
        REQUIRE(drain_ids(h) == std::vector<int>{0, 1, 2, 3, 4, 5});
    }
    SECTION("middle") {
        h.erase(ts[1].get());
        check_heap(h, ts);
        h.erase(ts[4].get());
        check_heap(h, ts);
        REQUIRE(drain_ids(h) == std::vector<int>{0, 2, 3, 5, 6});
    }
    SECTION("the only node") {
        timer_heap one;
        test_timer t;
        one.push(&t);
        REQUIRE(t.index == 0);
        one.erase(&t);
        REQUIRE(one.empty());
        REQUIRE_FALSE(t.queued());
    }
}

TEST_CASE("timer_heap: erase that moves the last node up, past its new parent", "[timer_heap]") {
    // Pushed in this order the slots hold deadlines [1, 10, 2, 11, 12, 3, 4]:
    // erasing 12 (slot 4) moves 4 (slot 6) under 10 (slot 1), so it must sift up.
    auto ts = make_timers({1, 10, 2, 11, 12, 3, 4});
    timer_heap h;
    for (auto& t : ts) h.push(t.get());
    check_heap(h, ts);
    REQUIRE(ts[4]->index == 4);
    REQUIRE(ts[6]->index == 6);
    h.erase(ts[4].get());
    check_heap(h, ts);
    REQUIRE(ts[6]->index == 1); // swapped with 10
    REQUIRE(ts[1]->index == 4);
    REQUIRE(drain_ids(h) == std::vector<int>{0, 2, 5, 6, 1, 3});
}

TEST_CASE("timer_heap: erase that moves the last node down", "[timer_heap]") {
    // Slots [1, 2, 3, 4, 5, 6, 100]: erasing 2 (slot 1) puts 100 there; it sinks.
    auto ts = make_timers({1, 2, 3, 4, 5, 6, 100});
    timer_heap h;
    for (auto& t : ts) h.push(t.get());
    h.erase(ts[1].get());
    check_heap(h, ts);
    REQUIRE(drain_ids(h) == std::vector<int>{0, 2, 3, 4, 5, 6});
}

TEST_CASE("timer_heap: erase of a node that is not queued is a no-op", "[timer_heap]") {
    auto ts = make_timers({3, 1, 2});
    timer_heap h;
    test_timer never;
    h.erase(&never); // never pushed, on an empty heap
    REQUIRE(h.empty());

    for (auto& t : ts) h.push(t.get());
    h.erase(&never);
    REQUIRE(h.size() == 3);

    auto* popped = h.pop();
    REQUIRE(popped == ts[1].get());
    h.erase(popped); // already popped
    REQUIRE(h.size() == 2);

    h.erase(ts[0].get());
    h.erase(ts[0].get()); // erased twice
    REQUIRE(h.size() == 1);
    check_heap(h, ts);
    REQUIRE(h.top() == ts[2].get());
}

TEST_CASE("timer_heap: random pushes, erases and pops match a sorted reference", "[timer_heap]") {
    constexpr int node_count = 300, ops = 10'000;
    std::vector<int> zero(node_count, 0);
    auto ts = make_timers(zero);
    timer_heap h;
    // Reference ordered like the heap: by deadline, then by push order (seq).
    std::set<std::tuple<clock_type::time_point, std::uint64_t, int>> ref;
    std::uint64_t pushes = 0;

    std::mt19937 rng(20240611);
    auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    for (int op = 0; op < ops; ++op) {
        CAPTURE(op);
        int kind = pick(10);
        if (kind < 5) { // push a node that is not queued (few distinct deadlines: many ties)
            auto& t = *ts[static_cast<std::size_t>(pick(node_count))];
            if (t.queued()) continue;
            t.deadline = at(pick(50));
            std::uint64_t before_seq = t.seq;
            h.push(&t);
            REQUIRE(t.queued());
            if (pushes++ > 0) REQUIRE(t.seq > before_seq); // numbered anew on every push
            ref.emplace(t.deadline, t.seq, t.id);
        } else if (kind < 8) { // erase any node, queued or not
            auto& t = *ts[static_cast<std::size_t>(pick(node_count))];
            bool was = t.queued();
            auto key = std::make_tuple(t.deadline, t.seq, t.id);
            h.erase(&t);
            REQUIRE_FALSE(t.queued());
            REQUIRE(ref.erase(key) == (was ? 1u : 0u));
        } else if (!h.empty()) { // pop
            REQUIRE(!ref.empty());
            auto* n = static_cast<test_timer*>(h.pop());
            REQUIRE(n->id == std::get<2>(*ref.begin()));
            REQUIRE_FALSE(n->queued());
            ref.erase(ref.begin());
        }
        REQUIRE(h.size() == ref.size());
        if (!h.empty()) REQUIRE(static_cast<test_timer*>(h.top())->id == std::get<2>(*ref.begin()));
        if (op % 97 == 0) check_heap(h, ts);
    }
    check_heap(h, ts);
    REQUIRE(pushes > 1000);
    std::vector<int> want;
    for (auto& k : ref) want.push_back(std::get<2>(k));
    REQUIRE(drain_ids(h) == want);
}
