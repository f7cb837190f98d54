#include <offload/mutex.hpp>

#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

task<> settle() {
    for (int i = 0; i < 5; ++i) co_await sleep(0ms);
}

struct shared_state {
    int inside = 0;
    int max_inside = 0;
    std::vector<int> order;
};

// Holds the mutex across suspension points, as async code does.
task<> critical_section(mutex& m, shared_state& s, int id) {
    auto g = co_await m.scoped_lock();
    ++s.inside;
    s.max_inside = std::max(s.max_inside, s.inside);
    s.order.push_back(id);
    co_await sleep(1ms);
    co_await sleep(0ms);
    --s.inside;
}

task<> lock_and_record(mutex& m, std::vector<int>& order, int id) {
    co_await m.lock();
    order.push_back(id);
    m.unlock();
}

} // namespace

TEST_CASE("mutex: tasks that sleep while holding it never overlap", "[mutex]") {
    run([]() -> task<> {
        mutex m;
        shared_state s;
        std::vector<task_handle<>> tasks;
        for (int i = 0; i < 5; ++i) tasks.push_back(create_task(critical_section(m, s, i)));
        for (auto& t : tasks) co_await t;
        CHECK(s.max_inside == 1);
        CHECK(s.order == std::vector<int>{0, 1, 2, 3, 4}); // FIFO
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex: try_lock, locked and unlock", "[mutex]") {
    run([]() -> task<> {
        mutex m;
        CHECK_FALSE(m.locked());
        CHECK(m.try_lock());
        CHECK(m.locked());
        CHECK_FALSE(m.try_lock());
        m.unlock();
        CHECK_FALSE(m.locked());
        co_await m.lock();
        CHECK(m.locked());
        m.unlock();
    }());
}

TEST_CASE("mutex: unlocking an unlocked mutex throws", "[mutex]") {
    mutex m;
    REQUIRE_THROWS_AS(m.unlock(), std::logic_error);
    CHECK(m.try_lock());
    m.unlock();
    REQUIRE_THROWS_AS(m.unlock(), std::logic_error);
}

TEST_CASE("mutex: unlock hands the lock to the oldest waiter", "[mutex]") {
    run([]() -> task<> {
        mutex m;
        co_await m.lock();
        std::vector<int> order;
        std::vector<task_handle<>> tasks;
        for (int i = 0; i < 3; ++i) {
            tasks.push_back(create_task(lock_and_record(m, order, i)));
            co_await settle();
        }
        m.unlock();
        CHECK(m.locked());         // handed over, not released
        CHECK_FALSE(m.try_lock()); // so nobody barges in
        for (auto& t : tasks) co_await t;
        CHECK(order == std::vector<int>{0, 1, 2});
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex: a cancelled waiter does not take the lock", "[mutex]") {
    run([]() -> task<> {
        mutex m;
        co_await m.lock();
        std::vector<int> order;
        auto cancelled = create_task(lock_and_record(m, order, 1));
        auto next = create_task(lock_and_record(m, order, 2));
        co_await settle();
        cancelled.cancel();
        co_await settle();
        CHECK(cancelled.cancelled());
        m.unlock();
        co_await next;
        CHECK(order == std::vector<int>{2});
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex: a cancel after the hand-off, before the task ran, throws at lock() and unlocks", "[mutex]") {
    run([]() -> task<> {
        mutex m;
        co_await m.lock();
        bool got = false;
        auto body = [](mutex& mx, bool& g) -> task<> {
            auto guard = co_await mx.scoped_lock();
            g = true;
        };
        auto t = create_task(body, std::ref(m), std::ref(got));
        co_await settle();
        m.unlock(); // handed to t, which has not run yet
        CHECK(m.locked());
        t.cancel(); // t gives the lock back
        CHECK_FALSE(m.locked());
        co_await settle();
        CHECK_FALSE(got);
        CHECK(t.cancelled());
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex: a cancel after the holder resumed is thrown at its next await; the guard unlocks", "[mutex]") {
    run([]() -> task<> {
        mutex m;
        bool got = false;
        auto body = [](mutex& mx, bool& g) -> task<> {
            auto guard = co_await mx.scoped_lock();
            g = true;
            co_await sleep(1h);
        };
        auto t = create_task(body, std::ref(m), std::ref(got));
        co_await settle();
        CHECK(m.locked());
        t.cancel();
        co_await settle();
        CHECK(got);
        CHECK(t.cancelled());
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex: unlocking then cancelling the woken waiter gives the lock to exactly the next one",
          "[mutex][giveback]") {
    // asyncio's test_cancel_release_race, with the unlock first: t1 was handed
    // the lock but had not run; its cancel passes the lock to t2.
    run([]() -> task<> {
        mutex m;
        int locked_count = 0;
        auto lockit = [](mutex& mx, int& n) -> task<> {
            co_await mx.lock();
            ++n;
        };
        co_await m.lock();
        auto t1 = create_task(lockit, std::ref(m), std::ref(locked_count));
        auto t2 = create_task(lockit, std::ref(m), std::ref(locked_count));
        auto t3 = create_task(lockit, std::ref(m), std::ref(locked_count));
        co_await settle();
        event_loop::current().call_soon([&] {
            m.unlock();
            t1.cancel();
        });
        REQUIRE_THROWS_AS(co_await t1, cancelled_error);
        co_await settle();
        CHECK(locked_count == 1);
        CHECK(t2.done());
        CHECK_FALSE(t3.done());
        t3.cancel();
        co_await settle();
        CHECK(t3.cancelled());
        CHECK(m.locked()); // t2 holds it (it never unlocked)
    }());
}

TEST_CASE("mutex: a task that unlocks and locks again queues behind the waiters", "[mutex]") {
    run([]() -> task<> {
        mutex m;
        std::vector<int> order;
        co_await m.lock();
        auto b = create_task(lock_and_record(m, order, 2));
        auto c = create_task(lock_and_record(m, order, 3));
        co_await settle();
        m.unlock(); // to b, which has not run yet
        co_await m.lock();
        order.push_back(4);
        m.unlock();
        co_await b;
        co_await c;
        CHECK(order == std::vector<int>{2, 3, 4});
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex: cancelling a waiter just before unlock gives the lock to exactly one other", "[mutex]") {
    // asyncio's test_cancel_release_race: cancel the first waiter, then unlock.
    run([]() -> task<> {
        mutex m;
        int locked_count = 0;
        auto lockit = [](mutex& mx, int& n) -> task<> {
            co_await mx.lock();
            ++n;
        };
        co_await m.lock();
        auto t1 = create_task(lockit, std::ref(m), std::ref(locked_count));
        auto t2 = create_task(lockit, std::ref(m), std::ref(locked_count));
        auto t3 = create_task(lockit, std::ref(m), std::ref(locked_count));
        co_await settle();
        event_loop::current().call_soon([&] {
            t1.cancel();
            m.unlock();
        });
        REQUIRE_THROWS_AS(co_await t1, cancelled_error);
        co_await settle();
        CHECK(locked_count == 1);
        CHECK(t2.done());
        CHECK_FALSE(t3.done());
        t3.cancel();
        co_await settle();
        CHECK(t3.cancelled());
        CHECK(m.locked()); // t2 holds it (it never unlocked)
    }());
}

TEST_CASE("mutex: a waiter cancelled before its turn does not keep the next one waiting", "[mutex]") {
    // asyncio's test_finished_waiter_cancelled.
    run([]() -> task<> {
        mutex m;
        std::vector<int> order;
        co_await m.lock();
        auto tb = create_task(lock_and_record(m, order, 1));
        co_await settle();
        auto tc = create_task(lock_and_record(m, order, 2));
        tb.cancel();
        m.unlock();
        co_await settle();
        CHECK(tb.cancelled());
        co_await tc;
        CHECK(order == std::vector<int>{2});
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex: scoped_lock unlocks on exception", "[mutex]") {
    run([]() -> task<> {
        mutex m;
        auto body = [](mutex& mx) -> task<> {
            auto g = co_await mx.scoped_lock();
            throw std::runtime_error("boom");
        };
        auto t = create_task(body, std::ref(m));
        REQUIRE_THROWS_AS(co_await t, std::runtime_error);
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("mutex: debug mode rejects unlock() from a foreign thread", "[mutex]") {
    run([]() -> task<> {
        event_loop::current().set_debug(true);
        mutex m;
        co_await m.lock();
        std::vector<int> order;
        auto waiter = create_task(lock_and_record(m, order, 1));
        co_await settle();
        bool threw = false;
        std::thread th([&] {
            try {
                m.unlock();
            } catch (const std::logic_error&) {
                threw = true;
            }
        });
        th.join();
        CHECK(threw);
        CHECK(m.locked());
        m.unlock();
        co_await waiter;
        CHECK(order == std::vector<int>{1});
    }());
}
