#include <offload/queue.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>
#include <offload/wait_for.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

task<> settle() {
    for (int i = 0; i < 5; ++i) co_await sleep(0ms);
}

task<> put_and_count(queue<int>& q, int v, int& done) {
    co_await q.put(v);
    ++done;
}

task<> get_into(queue<int>& q, std::vector<int>& got) {
    int v = co_await q.get();
    got.push_back(v);
}

task<> worker(queue<int>& q, std::vector<int>& processed) {
    for (;;) {
        int v = co_await q.get();
        co_await sleep(1ms);
        processed.push_back(v);
        q.task_done();
    }
}

} // namespace

TEST_CASE("queue: items come out in the order they were put", "[queue]") {
    run([]() -> task<> {
        queue<int> q;
        CHECK(q.maxsize() == 0);
        for (int i = 0; i < 100; ++i) co_await q.put(i);
        CHECK(q.size() == 100);
        CHECK_FALSE(q.full()); // unbounded
        for (int i = 0; i < 100; ++i) {
            int v = co_await q.get();
            REQUIRE(v == i);
        }
        CHECK(q.empty());
    }());
}

TEST_CASE("queue: a full queue suspends put until a get makes room", "[queue]") {
    run([]() -> task<> {
        queue<int> q(2);
        int done = 0;
        auto p1 = create_task(put_and_count(q, 1, done));
        auto p2 = create_task(put_and_count(q, 2, done));
        auto p3 = create_task(put_and_count(q, 3, done));
        co_await settle();
        CHECK(done == 2);
        CHECK(q.full());
        CHECK(q.size() == 2);
        int a = co_await q.get(); // makes room: reserved for the waiting put, whose item goes in when it runs
        CHECK(a == 1);
        CHECK(q.size() == 1);
        CHECK(q.full()); // nobody else can take that room
        co_await p3;
        CHECK(q.size() == 2);
        CHECK(done == 3);
        int b = co_await q.get();
        int c = co_await q.get();
        CHECK(b == 2);
        CHECK(c == 3);
        CHECK(q.empty());
    }());
}

TEST_CASE("queue: waiting getters are served in order, by hand-off", "[queue]") {
    run([]() -> task<> {
        queue<int> q;
        std::vector<int> got;
        std::vector<task_handle<>> getters;
        for (int i = 0; i < 3; ++i) {
            getters.push_back(create_task(get_into(q, got)));
            co_await settle();
        }
        for (int i = 0; i < 3; ++i) CHECK(q.try_put(10 + i));
        CHECK(q.empty()); // handed to the getters directly
        for (auto& g : getters) co_await g;
        CHECK(got == std::vector<int>{10, 11, 12});
    }());
}

TEST_CASE("queue: a getter woken by put gets that item even if another get runs first", "[queue]") {
    run([]() -> task<> {
        queue<int> q;
        std::vector<int> got;
        auto g = create_task(get_into(q, got));
        co_await settle();
        CHECK(q.try_put(1)); // handed to g, which has not run yet
        CHECK_FALSE(q.try_get().has_value()); // a newcomer does not take it
        CHECK(q.try_put(2));
        int mine = co_await q.get();
        CHECK(mine == 2);
        co_await g;
        CHECK(got == std::vector<int>{1});
    }());
}

TEST_CASE("queue: a getter that puts and gets again does not take the item of a getter woken before", "[queue]") {
    // The queue's form of asyncio's test_acquire_fifo_order_2: g1 and g2 are
    // both handed an item; g1 runs first, puts, and gets again: it gets its own
    // item back, never the one handed to g2.
    run([]() -> task<> {
        queue<int> q;
        std::vector<int> got1, got2;
        auto g1 = create_task(
            [](queue<int>& qu, std::vector<int>& out) -> task<> {
                out.push_back(co_await qu.get());
                CHECK(qu.try_put(3));
                out.push_back(co_await qu.get());
            },
            std::ref(q), std::ref(got1));
        auto g2 = create_task(get_into(q, got2));
        co_await settle();
        CHECK(q.try_put(1));
        CHECK(q.try_put(2));
        co_await g1;
        co_await g2;
        CHECK(got1 == std::vector<int>{1, 3});
        CHECK(got2 == std::vector<int>{2});
    }());
}

TEST_CASE("queue: a putter woken when room frees keeps its place against a later put", "[queue]") {
    run([]() -> task<> {
        queue<int> q(1);
        CHECK(q.try_put(1));
        int done = 0;
        auto p = create_task(put_and_count(q, 2, done));
        co_await settle();
        CHECK(q.try_get() == 1); // room: reserved for p, although p has not run
        CHECK_FALSE(q.try_put(3)); // so a newcomer finds the queue full
        co_await p;
        CHECK(done == 1);
        CHECK(q.try_get() == 2);
        CHECK(q.try_put(3));
    }());
}

TEST_CASE("queue: a cancelled waiting putter passes the free slot to the next putter", "[queue]") {
    run([]() -> task<> {
        queue<int> q(1);
        CHECK(q.try_put(1));
        int done1 = 0, done2 = 0;
        auto p1 = create_task(put_and_count(q, 2, done1));
        co_await settle();
        auto p2 = create_task(put_and_count(q, 3, done2));
        co_await settle();
        p1.cancel();
        co_await settle();
        CHECK(q.try_get() == 1); // the slot goes to p2, not to the cancelled p1
        co_await p2;
        CHECK(p1.cancelled());
        CHECK(done1 == 0);
        CHECK(done2 == 1);
        CHECK(q.try_get() == 3);
        CHECK(q.empty());
    }());
}

TEST_CASE("queue: task_done and join track processed items", "[queue]") {
    run([]() -> task<> {
        queue<int> q;
        co_await q.join(); // nothing put: returns at once
        std::vector<int> processed;
        auto w = create_task(worker(q, processed));
        for (int i = 0; i < 5; ++i) co_await q.put(i);
        co_await q.join();
        CHECK(processed == std::vector<int>{0, 1, 2, 3, 4});
        w.cancel();
        co_await settle();
        CHECK(w.cancelled());
    }());
}

TEST_CASE("queue: task_done called more times than items were put throws", "[queue]") {
    queue<int> q;
    REQUIRE_THROWS_AS(q.task_done(), std::logic_error);
    CHECK(q.try_put(1));
    auto v = q.try_get();
    CHECK(v == 1);
    q.task_done();
    REQUIRE_THROWS_AS(q.task_done(), std::logic_error);
}

TEST_CASE("queue: try_put and try_get never wait", "[queue]") {
    queue<int> q(2);
    CHECK_FALSE(q.try_get().has_value());
    CHECK(q.try_put(1));
    int two = 2;
    CHECK(q.try_put(two));
    CHECK_FALSE(q.try_put(3));
    CHECK(q.full());
    CHECK(q.try_get() == 1);
    CHECK(q.try_get() == 2);
    CHECK_FALSE(q.try_get().has_value());
}

TEST_CASE("queue: a cancelled put does not insert its item", "[queue]") {
    run([]() -> task<> {
        queue<int> q(1);
        co_await q.put(1);
        int done = 0;
        auto p = create_task(put_and_count(q, 2, done));
        co_await settle();
        p.cancel();
        co_await settle();
        CHECK(p.cancelled());
        CHECK(done == 0);
        int a = co_await q.get();
        CHECK(a == 1);
        CHECK(q.empty());
        CHECK_FALSE(q.try_get().has_value());
    }());
}

TEST_CASE("queue: a cancelled get loses no item", "[queue]") {
    run([]() -> task<> {
        queue<int> q;
        std::vector<int> got_a, got_b;
        auto a = create_task(get_into(q, got_a));
        co_await settle();
        a.cancel();
        co_await settle();
        CHECK(a.cancelled());
        auto b = create_task(get_into(q, got_b));
        co_await settle();
        co_await q.put(7); // goes to the next getter, not to the cancelled one
        co_await b;
        CHECK(got_a.empty());
        CHECK(got_b == std::vector<int>{7});
    }());
}

TEST_CASE("queue: a get cancelled after the hand-off, before it ran, gives the item back", "[queue]") {
    // The new rule (asyncio's): the item handed to t goes back into the queue,
    // t's get() throws cancelled_error, and t never sees the item.
    run([]() -> task<> {
        queue<int> q;
        std::optional<int> got;
        auto body = [](queue<int>& qu, std::optional<int>& out) -> task<> { out = co_await qu.get(); };
        auto t = create_task(body, std::ref(q), std::ref(got));
        co_await settle();
        CHECK(q.try_put(42)); // handed to t, which has not run yet
        CHECK(q.empty());
        t.cancel();
        CHECK(q.size() == 1); // given back at once
        co_await settle();
        CHECK_FALSE(got.has_value());
        CHECK(t.cancelled());
        CHECK(q.try_get() == 42);
        q.task_done();
        co_await q.join(); // counted once: one task_done() finishes it
    }());
}

TEST_CASE("queue: a put cancelled after it was granted room, before it ran, does not put its item", "[queue]") {
    run([]() -> task<> {
        queue<int> q(1);
        co_await q.put(1);
        int done = 0;
        auto p = create_task(put_and_count(q, 2, done));
        co_await settle();
        auto first = q.try_get(); // room: reserved for the waiting put, which has not run yet
        CHECK(first == 1);
        CHECK(q.full());
        p.cancel();
        CHECK_FALSE(q.full()); // the room is free again
        co_await settle();
        CHECK(done == 0);
        CHECK(p.cancelled()); // its put() threw cancelled_error: the caller may rely on "not put"
        CHECK(q.empty());
        CHECK(q.try_put(3));
        CHECK(q.try_get() == 3);
    }());
}

// ---- cancellation after the hand-off, before the task ran (asyncio's model) ----

namespace {

// The scenario of the issue: h is handed an item, then cancelled before it
// runs. Under the old rule h returned the item and ended cancelled: the item
// was lost. Now it stays in the queue.
template <class Q>
task<> handed_item_survives_cancel(Q& q, int after, int first, int second) {
    auto h = create_task([](Q& qu) -> task<int> { co_return co_await qu.get(); }, std::ref(q));
    co_await settle(); // h waits in get()
    CHECK(q.try_put(7)); // 7 is handed to h; h's wake-up is queued
    CHECK(q.try_put(after));
    h.cancel(); // before h runs
    co_await settle();
    CHECK(h.cancelled());
    std::vector<int> got;
    while (auto v = q.try_get()) got.push_back(*v);
    CHECK(got == std::vector<int>{first, second});
}

} // namespace

TEST_CASE("queue: an item handed to a getter cancelled before it ran is not lost", "[queue][giveback]") {
    run([]() -> task<> {
        queue<int> q;
        co_await handed_item_survives_cancel(q, 8, 7, 8); // back at the front
    }());
}

TEST_CASE("lifo_queue: an item handed to a getter cancelled before it ran is not lost", "[queue][lifo][giveback]") {
    run([]() -> task<> {
        lifo_queue<int> q;
        co_await handed_item_survives_cancel(q, 8, 7, 8); // back on top: the next get takes it
    }());
}

TEST_CASE("priority_queue: an item handed to a getter cancelled before it ran is not lost",
          "[queue][priority][giveback]") {
    run([]() -> task<> {
        priority_queue<int> q;
        co_await handed_item_survives_cancel(q, 8, 7, 8); // back into the heap
        co_await settle();
        priority_queue<int> q2;
        co_await handed_item_survives_cancel(q2, 1, 1, 7);
    }());
}

TEST_CASE("queue: the item of a getter cancelled before it ran goes to the next waiting getter", "[queue][giveback]") {
    // asyncio's test_get_cancelled_race, with the cancel after the wake-up: the
    // item goes on to the next getter, and order is kept.
    run([]() -> task<> {
        queue<int> q;
        std::vector<int> got1, got2, got3;
        auto g1 = create_task(get_into(q, got1));
        auto g2 = create_task(get_into(q, got2));
        auto g3 = create_task(get_into(q, got3));
        co_await settle();
        CHECK(q.try_put(1)); // to g1
        CHECK(q.try_put(2)); // to g2
        g1.cancel();         // 1 goes to g3
        co_await settle();
        CHECK(g1.cancelled());
        CHECK(got1.empty());
        CHECK(got2 == std::vector<int>{2});
        CHECK(got3 == std::vector<int>{1});
        CHECK(q.empty());
    }());
}

TEST_CASE("queue: a get cancelled by wait_for's timeout after the hand-off leaves the item", "[queue][giveback]") {
    // The timeout cancels the get at the moment the item arrives: whichever
    // wins, the item is either returned or still in the queue, never lost.
    run([]() -> task<> {
        queue<int> q;
        std::optional<int> got;
        bool timed_out = false;
        auto t = create_task(
            [](queue<int>& qu, std::optional<int>& out, bool& to) -> task<> {
                try {
                    out = co_await wait_for(qu.get(), 0ms);
                } catch (const timeout_error&) {
                    to = true;
                }
            },
            std::ref(q), std::ref(got), std::ref(timed_out));
        co_await sleep(0ms);
        (void)q.try_put(5);
        co_await t;
        CHECK(got.has_value() != timed_out);
        if (timed_out) CHECK(q.try_get() == 5);
        CHECK(q.empty());
    }());
}

TEST_CASE("queue: a putter granted room and cancelled before it ran passes the room on", "[queue][giveback]") {
    // asyncio's test_put_cancelled_race, with the cancel after the wake-up:
    // p2's room goes to p3, and the items keep the putters' order.
    run([]() -> task<> {
        queue<int> q(1);
        CHECK(q.try_put(1));
        int done1 = 0, done2 = 0, done3 = 0;
        auto p1 = create_task(put_and_count(q, 2, done1));
        co_await settle();
        auto p2 = create_task(put_and_count(q, 3, done2));
        co_await settle();
        auto p3 = create_task(put_and_count(q, 4, done3));
        co_await settle();
        CHECK(q.try_get() == 1); // room for p1
        CHECK_FALSE(q.try_put(99)); // reserved: no barging
        co_await settle();
        CHECK(done1 == 1);
        CHECK(q.try_get() == 2); // room for p2
        p2.cancel();             // before p2 ran: the room goes to p3
        CHECK(q.full());
        CHECK_FALSE(q.try_put(99));
        co_await settle();
        CHECK(p2.cancelled());
        CHECK(done2 == 0);
        CHECK(done3 == 1);
        CHECK(q.try_get() == 4);
        CHECK(q.empty());
    }());
}

TEST_CASE("queue: a granted putter whose item goes to a getter frees its room for the next putter",
          "[queue][giveback]") {
    run([]() -> task<> {
        queue<int> q(1);
        CHECK(q.try_put(1));
        int done1 = 0, done2 = 0;
        auto p1 = create_task(put_and_count(q, 2, done1));
        co_await settle();
        auto p2 = create_task(put_and_count(q, 3, done2));
        co_await settle();
        CHECK(q.try_get() == 1); // room reserved for p1, which has not run
        std::vector<int> got;
        auto g = create_task(get_into(q, got)); // the queue is empty: g waits
        co_await settle();
        CHECK(done1 == 1);
        CHECK(got == std::vector<int>{2}); // p1's item went straight to g
        CHECK(done2 == 1);                 // and p1's room to p2
        CHECK(q.try_get() == 3);
        co_await g;
    }());
}

TEST_CASE("queue: shutdown refuses a putter granted room that has not run yet", "[queue][giveback][shutdown]") {
    run([]() -> task<> {
        queue<int> q(1);
        CHECK(q.try_put(1));
        bool refused = false;
        auto p = create_task(
            [](queue<int>& qu, bool& r) -> task<> {
                try {
                    co_await qu.put(2);
                } catch (const queue_shut_down&) {
                    r = true;
                }
            },
            std::ref(q), std::ref(refused));
        co_await settle();
        CHECK(q.try_get() == 1); // room reserved for p
        q.shutdown();
        co_await p;
        CHECK(refused);
        CHECK(q.empty()); // 2 was not put
        q.task_done();
        co_await q.join();
    }());
}

TEST_CASE("queue: a getter handed an item and then cancelled after shutdown(true) drops it, counted done",
          "[queue][giveback][shutdown]") {
    run([]() -> task<> {
        queue<int> q;
        auto h = create_task([](queue<int>& qu) -> task<int> { co_return co_await qu.get(); }, std::ref(q));
        co_await settle();
        CHECK(q.try_put(7)); // handed to h
        q.shutdown(true);
        h.cancel();
        co_await settle();
        CHECK(h.cancelled());
        co_await q.join(); // the dropped item counts as done
        REQUIRE_THROWS_AS(q.try_get(), queue_shut_down);
    }());
}

TEST_CASE("queue: a join woken and then cancelled before it ran throws", "[queue][giveback]") {
    run([]() -> task<> {
        queue<int> q;
        CHECK(q.try_put(1));
        bool j_returned = false, k_returned = false;
        auto joiner = [](queue<int>& qu, bool& returned) -> task<> {
            co_await qu.join();
            returned = true;
        };
        auto j = create_task(joiner, std::ref(q), std::ref(j_returned));
        auto k = create_task(joiner, std::ref(q), std::ref(k_returned));
        co_await settle();
        CHECK(q.try_get() == 1);
        q.task_done(); // wakes j and k
        j.cancel();    // before j ran: nothing to give back, its join() throws
        REQUIRE_THROWS_AS(co_await j, cancelled_error);
        CHECK_FALSE(j_returned);
        co_await k;
        CHECK(k_returned);
        co_await q.join();
    }());
}

TEST_CASE("queue: random cancellations of getters and putters never lose or duplicate an item", "[queue][giveback]") {
    // An item counts as taken when a get() task returns it (a task that ends
    // cancelled returns nothing), and as put when a put() task completes.
    run([]() -> task<> {
        queue<int> q(2);
        std::vector<task_handle<int>> getters;
        std::vector<task_handle<bool>> putters;
        std::vector<int> got;
        unsigned seed = 4242;
        auto next = [&seed] { return (seed = seed * 1103515245u + 12345u) >> 16; };
        auto putter = [](queue<int>& qu, int v) -> task<bool> {
            co_await qu.put(v);
            co_return true;
        };
        auto getter = [](queue<int>& qu) -> task<int> { co_return co_await qu.get(); };
        int n = 0;
        for (int i = 0; i < 400; ++i) {
            if (next() % 2 == 0)
                putters.push_back(create_task(putter, std::ref(q), n++));
            else
                getters.push_back(create_task(getter, std::ref(q)));
            if (next() % 3 == 0 && !getters.empty()) getters[next() % getters.size()].cancel();
            if (next() % 3 == 0 && !putters.empty()) putters[next() % putters.size()].cancel();
            if (next() % 5 == 0)
                if (auto v = q.try_get()) got.push_back(*v);
            if (next() % 3 == 0) co_await sleep(0ms);
        }
        co_await settle();
        for (auto& t : getters) t.cancel();
        for (auto& t : putters) t.cancel();
        co_await settle();
        std::vector<int> put_ok;
        for (std::size_t i = 0; i < putters.size(); ++i)
            if (putters[i].done() && !putters[i].cancelled()) put_ok.push_back(static_cast<int>(i));
        for (auto& g : getters)
            if (g.done() && !g.cancelled()) got.push_back(g.result());
        std::vector<int> seen = got;
        while (auto v = q.try_get()) seen.push_back(*v);
        std::sort(seen.begin(), seen.end());
        CHECK(seen == put_ok); // each item put is taken or still there, exactly once
        CHECK(put_ok.size() > 20);
        CHECK_FALSE(got.empty());
    }());
}

TEST_CASE("queue: a frame destroyed after it was handed an item puts the item back", "[queue][giveback]") {
    queue<std::unique_ptr<int>> q;
    {
        event_loop loop;
        loop.run_until_complete([](queue<std::unique_ptr<int>>& qu) -> task<> {
            auto getter = [](queue<std::unique_ptr<int>>& x) -> task<> { auto v = co_await x.get(); };
            create_task(getter, std::ref(qu));
            co_await sleep(0ms);
            CHECK(qu.try_put(std::make_unique<int>(3))); // handed; the getter never runs
        }(q));
    } // ~event_loop destroys the served frame
    auto back = q.try_get();
    REQUIRE(back.has_value());
    CHECK(**back == 3);
}

TEST_CASE("queue: move-only items", "[queue]") {
    run([]() -> task<> {
        queue<std::unique_ptr<int>> q(1);
        co_await q.put(std::make_unique<int>(1));
        auto extra = std::make_unique<int>(2);
        CHECK_FALSE(q.try_put(std::move(extra)));
        REQUIRE(extra != nullptr); // a failed try_put leaves the item with the caller
        auto getter = [](queue<std::unique_ptr<int>>& qu) -> task<int> {
            auto a = co_await qu.get();
            auto b = co_await qu.get();
            co_return *a * 10 + *b;
        };
        auto g = create_task(getter, std::ref(q));
        co_await q.put(std::move(extra));
        int v = co_await g;
        CHECK(v == 12);
        auto none = q.try_get();
        CHECK_FALSE(none.has_value());
    }());
}

TEST_CASE("queue: debug mode rejects use from a foreign thread", "[queue]") {
    run([]() -> task<> {
        event_loop::current().set_debug(true);
        queue<int> q;
        std::vector<int> got;
        auto g = create_task(get_into(q, got));
        co_await settle();
        bool threw = false;
        std::thread th([&] {
            try {
                (void)q.try_put(1);
            } catch (const std::logic_error&) {
                threw = true;
            }
        });
        th.join();
        CHECK(threw);
        CHECK(got.empty());
        CHECK(q.try_put(2));
        co_await g;
        CHECK(got == std::vector<int>{2});
    }());
}

TEST_CASE("queue: a get under wait_for times out without taking an item", "[queue]") {
    run([]() -> task<> {
        queue<int> q;
        REQUIRE_THROWS_AS(co_await wait_for(q.get(), 10ms), timeout_error);
        CHECK(q.try_put(5)); // no getter is left waiting: the item stays in the queue
        CHECK(q.size() == 1);
        int v = co_await wait_for(q.get(), 1s);
        CHECK(v == 5);
    }());
}

TEST_CASE("queue: waiting frames destroyed with their loop leave the queue", "[queue]") {
    queue<std::unique_ptr<int>> q(1);
    {
        event_loop loop;
        loop.run_until_complete([](queue<std::unique_ptr<int>>& qu) -> task<> {
            co_await qu.put(std::make_unique<int>(1));
            auto putter = [](queue<std::unique_ptr<int>>& x) -> task<> { co_await x.put(std::make_unique<int>(2)); };
            create_task(putter, std::ref(qu));
            co_await sleep(1ms);
        }(q));
    } // ~event_loop destroys the waiting put with its item
    auto first = q.try_get();
    REQUIRE(first.has_value());
    CHECK(**first == 1);
    CHECK_FALSE(q.try_get().has_value()); // the abandoned put did not insert
}

// ---- shutdown (asyncio 3.13's test_queues.py shutdown cases) ----

TEST_CASE("queue: after shutdown of an empty queue, put and get throw queue_shut_down", "[queue][shutdown]") {
    run([]() -> task<> {
        queue<int> q;
        CHECK_FALSE(q.is_shut_down());
        q.shutdown();
        CHECK(q.is_shut_down());
        REQUIRE_THROWS_AS(co_await q.put(1), queue_shut_down);
        REQUIRE_THROWS_AS(co_await q.get(), queue_shut_down);
        REQUIRE_THROWS_AS(q.try_put(1), queue_shut_down);
        REQUIRE_THROWS_AS(q.try_get(), queue_shut_down);
        CHECK(q.empty());
    }());
}

TEST_CASE("queue: after shutdown, get drains the items left and then throws", "[queue][shutdown]") {
    run([]() -> task<> {
        queue<int> q;
        co_await q.put(1);
        CHECK(q.try_put(2));
        q.shutdown();
        REQUIRE_THROWS_AS(co_await q.put(3), queue_shut_down);
        REQUIRE_THROWS_AS(q.try_put(4), queue_shut_down);
        int a = co_await q.get();
        CHECK(a == 1);
        q.task_done();
        CHECK(q.try_get() == 2);
        q.task_done();
        co_await q.join();
        REQUIRE_THROWS_AS(co_await q.get(), queue_shut_down);
        REQUIRE_THROWS_AS(q.try_get(), queue_shut_down);
    }());
}

TEST_CASE("queue: shutdown(true) drops the items, counts them done, and get throws at once", "[queue][shutdown]") {
    run([]() -> task<> {
        queue<int> q;
        co_await q.put(1);
        CHECK(q.try_put(2));
        q.shutdown(true);
        CHECK(q.empty());
        REQUIRE_THROWS_AS(co_await q.put(3), queue_shut_down);
        REQUIRE_THROWS_AS(co_await q.get(), queue_shut_down);
        REQUIRE_THROWS_AS(q.try_get(), queue_shut_down);
        REQUIRE_THROWS_AS(q.task_done(), std::logic_error); // the dropped items were counted done
        co_await q.join();                                  // nothing unfinished: at once
    }());
}

TEST_CASE("queue: shutdown wakes a waiting put with queue_shut_down and does not put its item", "[queue][shutdown]") {
    for (bool immediate : {false, true}) {
        run([](bool imm) -> task<> {
            queue<int> q(2);
            co_await q.put(1);
            co_await q.put(2);
            int done = 0;
            auto p = create_task(put_and_count(q, 3, done));
            co_await settle();
            CHECK_FALSE(p.done());
            q.shutdown(imm);
            REQUIRE_THROWS_AS(co_await p, queue_shut_down);
            CHECK(done == 0);
            CHECK(q.size() == (imm ? 0u : 2u));
        }(immediate));
    }
}

TEST_CASE("queue: shutdown wakes waiting gets with queue_shut_down", "[queue][shutdown]") {
    for (bool immediate : {false, true}) {
        run([](bool imm) -> task<> {
            queue<int> q(1);
            co_await q.put(1);
            std::vector<int> got_first, got_second;
            auto first = create_task(get_into(q, got_first)); // takes the item
            co_await settle();
            auto second = create_task(get_into(q, got_second)); // waits: empty
            co_await settle();
            CHECK_FALSE(second.done());
            q.shutdown(imm);
            REQUIRE_THROWS_AS(co_await second, queue_shut_down);
            co_await first;
            CHECK(got_first == std::vector<int>{1});
            CHECK(got_second.empty());
        }(immediate));
    }
}

TEST_CASE("queue: consumers drain a shut down queue and join returns when they are done", "[queue][shutdown]") {
    run([]() -> task<> {
        queue<int> q(2);
        co_await q.put(1);
        co_await q.put(2);
        std::vector<int> got;
        auto consumer = [](queue<int>& qu, std::vector<int>& out) -> task<> {
            try {
                for (;;) {
                    int v = co_await qu.get();
                    co_await sleep(1ms);
                    out.push_back(v);
                    qu.task_done();
                }
            } catch (const queue_shut_down&) {
            }
        };
        auto c1 = create_task(consumer, std::ref(q), std::ref(got));
        auto c2 = create_task(consumer, std::ref(q), std::ref(got));
        int joined = 0;
        auto join_and_count = [](queue<int>& qu, int& n) -> task<> {
            co_await qu.join();
            ++n;
        };
        auto j1 = create_task(join_and_count, std::ref(q), std::ref(joined));
        auto j2 = create_task(join_and_count, std::ref(q), std::ref(joined));
        q.shutdown();
        co_await c1;
        co_await c2;
        co_await j1;
        co_await j2;
        std::sort(got.begin(), got.end());
        CHECK(got == std::vector<int>{1, 2});
        CHECK(joined == 2);
    }());
}

TEST_CASE("queue: shutdown(true) releases join, except for items taken and not yet done", "[queue][shutdown]") {
    run([]() -> task<> {
        queue<int> q(2);
        co_await q.put(1);
        co_await q.put(2);
        auto taken = q.try_get(); // one item in work: its task_done is still due
        CHECK(taken == 1);
        co_await q.put(3); // full again
        int joined = 0;
        auto j = create_task(
            [](queue<int>& qu, int& n) -> task<> {
                co_await qu.join();
                ++n;
            },
            std::ref(q), std::ref(joined));
        int done = 0;
        auto p = create_task(put_and_count(q, 4, done)); // waits: queue full
        co_await settle();
        q.shutdown(true);
        REQUIRE_THROWS_AS(co_await p, queue_shut_down);
        co_await settle();
        CHECK(joined == 0); // item 1 is not done yet
        q.task_done();
        co_await j;
        CHECK(joined == 1);
        CHECK(done == 0);
    }());
}

TEST_CASE("queue: shutdown(true) after shutdown() drops what was left", "[queue][shutdown]") {
    queue<int> q;
    CHECK(q.try_put(1));
    CHECK(q.try_put(2));
    q.shutdown();
    CHECK(q.try_get() == 1);
    q.shutdown(true);
    REQUIRE_THROWS_AS(q.try_get(), queue_shut_down);
    q.task_done(); // for item 1; item 2 was counted done when dropped
    REQUIRE_THROWS_AS(q.task_done(), std::logic_error);
    q.shutdown(); // harmless
    CHECK(q.is_shut_down());
}

TEST_CASE("queue: queue_shut_down says what to do", "[queue][shutdown]") {
    queue_shut_down e;
    CHECK(std::string(e.what()).find("shut down") != std::string::npos);
    const std::runtime_error& base = e;
    CHECK(std::string(base.what()) == e.what());
}

// ---- lifo_queue and priority_queue share the skeleton; their order differs ----

TEST_CASE("lifo_queue: get returns the item put last", "[queue][lifo]") {
    run([]() -> task<> {
        lifo_queue<int> q;
        for (int i = 1; i <= 3; ++i) co_await q.put(i);
        std::vector<int> got;
        for (int i = 0; i < 3; ++i) {
            int v = co_await q.get();
            got.push_back(v);
        }
        CHECK(got == std::vector<int>{3, 2, 1});
        CHECK(q.empty());
    }());
}

TEST_CASE("lifo_queue: a full stack suspends put; the waiting item goes on top when room frees", "[queue][lifo]") {
    run([]() -> task<> {
        lifo_queue<int> q(2);
        co_await q.put(1);
        co_await q.put(2);
        CHECK(q.full());
        int done = 0;
        auto p = create_task(
            [](lifo_queue<int>& qu, int& d) -> task<> {
                co_await qu.put(3);
                ++d;
            },
            std::ref(q), std::ref(done));
        co_await settle();
        CHECK(done == 0);
        CHECK(q.try_get() == 2);
        co_await p;
        CHECK(done == 1);
        CHECK(q.try_get() == 3);
        CHECK(q.try_get() == 1);
        q.shutdown();
        REQUIRE_THROWS_AS(q.try_get(), queue_shut_down);
    }());
}

TEST_CASE("priority_queue: get returns the smallest item first, as asyncio", "[queue][priority]") {
    run([]() -> task<> {
        priority_queue<int> q;
        for (int v : {5, 1, 4, 2, 3, 1}) co_await q.put(v);
        std::vector<int> got;
        while (auto v = q.try_get()) got.push_back(*v);
        CHECK(got == std::vector<int>{1, 1, 2, 3, 4, 5});
    }());
    priority_queue<int, std::greater<int>> largest_first;
    for (int v : {2, 9, 4}) CHECK(largest_first.try_put(v));
    CHECK(largest_first.try_get() == 9);
    CHECK(largest_first.try_get() == 4);
    CHECK(largest_first.try_get() == 2);
}

TEST_CASE("priority_queue: (priority, data) pairs and a stateful comparator", "[queue][priority]") {
    priority_queue<std::pair<int, std::string>> jobs;
    CHECK(jobs.try_put({2, "later"}));
    CHECK(jobs.try_put({0, "urgent"}));
    CHECK(jobs.try_put({1, "soon"}));
    CHECK(jobs.try_get()->second == "urgent");
    CHECK(jobs.try_get()->second == "soon");
    CHECK(jobs.try_get()->second == "later");

    struct by_distance {
        int target;
        bool operator()(int a, int b) const { return std::abs(a - target) < std::abs(b - target); }
    };
    priority_queue<int, by_distance> near(0, by_distance{10});
    for (int v : {0, 12, 30, 9}) CHECK(near.try_put(v));
    CHECK(near.try_get() == 9);
    CHECK(near.try_get() == 12);
    CHECK(near.try_get() == 0);
    CHECK(near.try_get() == 30);
}

TEST_CASE("priority_queue: a bounded queue takes the smallest, then moves the waiting item in", "[queue][priority]") {
    run([]() -> task<> {
        priority_queue<std::unique_ptr<int>, bool (*)(const std::unique_ptr<int>&, const std::unique_ptr<int>&)> q(
            2, [](const std::unique_ptr<int>& a, const std::unique_ptr<int>& b) { return *a < *b; });
        co_await q.put(std::make_unique<int>(5));
        co_await q.put(std::make_unique<int>(3));
        int done = 0;
        auto p = create_task(
            [](decltype(q)& qu, int& d) -> task<> {
                co_await qu.put(std::make_unique<int>(1));
                ++d;
            },
            std::ref(q), std::ref(done));
        co_await settle();
        CHECK(done == 0);
        auto a = co_await q.get();
        CHECK(*a == 3); // the smallest of the queue; the waiting 1 was not in it yet
        co_await p;
        auto b = co_await q.get();
        auto c = co_await q.get();
        CHECK(*b == 1);
        CHECK(*c == 5);
    }());
}

TEST_CASE("priority_queue: an item put while a getter waits goes to it, even if a smaller one follows",
          "[queue][priority]") {
    run([]() -> task<> {
        priority_queue<int> q;
        std::vector<int> got;
        auto g = create_task(
            [](priority_queue<int>& qu, std::vector<int>& out) -> task<> {
                int v = co_await qu.get();
                out.push_back(v);
            },
            std::ref(q), std::ref(got));
        co_await settle();
        CHECK(q.try_put(7)); // handed to g at once
        CHECK(q.try_put(1));
        co_await g;
        CHECK(got == std::vector<int>{7});
        CHECK(q.try_get() == 1);
        q.shutdown(true);
        REQUIRE_THROWS_AS(co_await q.get(), queue_shut_down);
    }());
}
