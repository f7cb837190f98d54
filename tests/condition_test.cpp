#include <offload/condition.hpp>

#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
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

// Waits once under the lock, then records `id` (still holding the lock).
task<> wait_and_record(condition& cv, std::vector<int>& order, int id) {
    auto g = co_await cv.scoped_lock();
    co_await cv.wait();
    CHECK(cv.locked());
    order.push_back(id);
}

} // namespace

TEST_CASE("condition: notify wakes the oldest waiters, each returning with the lock held", "[condition]") {
    // asyncio's test_wait and test_notify.
    run([]() -> task<> {
        condition cv;
        std::vector<int> order;
        std::vector<task_handle<>> tasks;
        for (int i = 1; i <= 3; ++i) tasks.push_back(create_task(wait_and_record(cv, order, i)));
        co_await settle();
        CHECK_FALSE(cv.locked()); // every waiter released it
        {
            auto g = co_await cv.scoped_lock();
            cv.notify(); // one
            co_await settle();
            CHECK(order.empty()); // it needs the lock, which we hold
        }
        co_await settle();
        CHECK(order == std::vector<int>{1});
        {
            auto g = co_await cv.scoped_lock();
            cv.notify(2);
        }
        co_await settle();
        CHECK(order == std::vector<int>{1, 2, 3});
        for (auto& t : tasks) co_await t;
        CHECK_FALSE(cv.locked());
    }());
}

TEST_CASE("condition: notify_all wakes every waiter; notify with nobody waiting does nothing", "[condition]") {
    run([]() -> task<> {
        condition cv;
        std::vector<int> order;
        {
            auto g = co_await cv.scoped_lock();
            cv.notify();
            cv.notify_all();
        }
        std::vector<task_handle<>> tasks;
        for (int i = 1; i <= 3; ++i) tasks.push_back(create_task(wait_and_record(cv, order, i)));
        co_await settle();
        {
            auto g = co_await cv.scoped_lock();
            cv.notify_all();
        }
        for (auto& t : tasks) co_await t;
        CHECK(order == std::vector<int>{1, 2, 3});
    }());
}

TEST_CASE("condition: wait and notify without the lock throw std::logic_error", "[condition]") {
    run([]() -> task<> {
        condition cv;
        REQUIRE_THROWS_AS(cv.notify(), std::logic_error);
        REQUIRE_THROWS_AS(cv.notify_all(), std::logic_error);
        REQUIRE_THROWS_AS(co_await cv.wait(), std::logic_error);
        REQUIRE_THROWS_AS(co_await cv.wait_for([] { return true; }), std::logic_error);
        try {
            cv.notify();
        } catch (const std::logic_error& e) {
            CHECK(std::string(e.what()).find("scoped_lock") != std::string::npos);
        }
        CHECK_FALSE(cv.locked());
    }());
}

TEST_CASE("condition: a notified waiter queues for the lock before a task that locks later", "[condition]") {
    run([]() -> task<> {
        condition cv;
        std::vector<int> order;
        auto w = create_task(wait_and_record(cv, order, 1));
        co_await settle();
        co_await cv.lock();
        cv.notify();
        auto late = create_task(
            [](condition& c, std::vector<int>& o) -> task<> {
                auto g = co_await c.scoped_lock();
                o.push_back(2);
            },
            std::ref(cv), std::ref(order));
        co_await settle();
        cv.unlock();
        co_await w;
        co_await late;
        CHECK(order == std::vector<int>{1, 2});
    }());
}

TEST_CASE("condition: wait_for tests the predicate under the lock and returns its value", "[condition]") {
    // asyncio's test_wait_for.
    run([]() -> task<> {
        condition cv;
        int presult = 0;
        int calls = 0;
        std::vector<int> got;
        auto waiter = [](condition& c, int& p, int& n, std::vector<int>& out) -> task<> {
            auto g = co_await c.scoped_lock();
            int v = co_await c.wait_for([&] {
                ++n;
                CHECK(c.locked());
                return p;
            });
            out.push_back(v);
        };
        auto t = create_task(waiter, std::ref(cv), std::ref(presult), std::ref(calls), std::ref(got));
        co_await settle();
        CHECK(calls == 1);
        {
            auto g = co_await cv.scoped_lock();
            cv.notify(); // predicate still false: it waits again
        }
        co_await settle();
        CHECK(calls == 2);
        CHECK(got.empty());
        {
            auto g = co_await cv.scoped_lock();
            presult = 7;
            cv.notify();
        }
        co_await t;
        CHECK(calls == 3);
        CHECK(got == std::vector<int>{7});
        // A true predicate returns at once, without waiting.
        auto g = co_await cv.scoped_lock();
        bool r = co_await cv.wait_for([] { return true; });
        CHECK(r);
        CHECK(cv.locked());
    }());
}

TEST_CASE("condition: a cancelled wait re-acquires the lock before it throws", "[condition]") {
    // asyncio's test_wait_cancel and test_wait_cancel_contested.
    run([]() -> task<> {
        condition cv;
        bool locked_when_thrown = false;
        auto waiter = [](condition& c, bool& out) -> task<> {
            auto g = co_await c.scoped_lock();
            try {
                co_await c.wait();
            } catch (const cancelled_error&) {
                out = c.locked();
                throw;
            }
        };
        auto t = create_task(waiter, std::ref(cv), std::ref(locked_when_thrown));
        co_await settle();
        co_await cv.lock(); // contested: the cancelled wait must wait for us
        t.cancel();
        co_await settle();
        CHECK_FALSE(t.done());
        t.cancel(); // a second cancel cannot interrupt the re-acquisition
        co_await settle();
        CHECK_FALSE(t.done());
        cv.unlock();
        REQUIRE_THROWS_AS(co_await t, cancelled_error);
        CHECK(locked_when_thrown);
        CHECK_FALSE(cv.locked()); // the guard unlocked it while unwinding
        // Uncontested: the lock is free, the cancelled wait takes it at once.
        auto t2 = create_task(waiter, std::ref(cv), std::ref(locked_when_thrown));
        co_await settle();
        locked_when_thrown = false;
        t2.cancel();
        REQUIRE_THROWS_AS(co_await t2, cancelled_error);
        CHECK(locked_when_thrown);
        CHECK_FALSE(cv.locked());
    }());
}

TEST_CASE("condition: a wait cancelled after notify, while it waits for the lock, throws holding it", "[condition]") {
    // asyncio's test_wait_cancel_after_notify (bpo-32841).
    run([]() -> task<> {
        condition cv;
        bool waited = false;
        auto t = create_task(
            [](condition& c, bool& w) -> task<> {
                auto g = co_await c.scoped_lock();
                w = true;
                co_await c.wait();
            },
            std::ref(cv), std::ref(waited));
        co_await settle();
        co_await cv.lock();
        cv.notify();
        co_await settle();
        t.cancel();
        co_await settle();
        CHECK_FALSE(t.done()); // it needs the lock first
        cv.unlock();
        REQUIRE_THROWS_AS(co_await t, cancelled_error);
        CHECK(waited);
        CHECK_FALSE(cv.locked());
    }());
}

TEST_CASE("condition: a waiter cancelled as it is notified passes the notification on", "[condition]") {
    // asyncio's test_cancelled_wakeup: no wake-up is lost to a cancel.
    run([]() -> task<> {
        condition cv;
        int state = 0;
        auto consumer = [](condition& c, int& s) -> task<> {
            auto g = co_await c.scoped_lock();
            for (;;) {
                co_await c.wait_for([&] { return s != 0; });
                if (s < 0) co_return;
                --s;
            }
        };
        auto c0 = create_task(consumer, std::ref(cv), std::ref(state));
        auto c1 = create_task(consumer, std::ref(cv), std::ref(state));
        co_await settle();
        co_await cv.lock();
        state += 1;
        cv.notify(1); // to c0...
        c0.cancel();  // ...which is cancelled before it runs
        cv.unlock();
        co_await settle();
        REQUIRE_THROWS_AS(co_await c0, cancelled_error);
        CHECK(state == 0); // c1 got the notification and consumed the item
        co_await cv.lock();
        state = -1;
        cv.notify_all();
        cv.unlock();
        co_await c1;
        CHECK_FALSE(cv.locked());
    }());
}

TEST_CASE("condition: a wait cancelled after the lock was handed back, before it ran, throws holding it",
          "[condition]") {
    run([]() -> task<> {
        condition cv;
        bool returned = false;
        bool held_when_thrown = false;
        auto t = create_task(
            [](condition& c, bool& r, bool& held) -> task<> {
                auto g = co_await c.scoped_lock();
                try {
                    co_await c.wait();
                } catch (const cancelled_error&) {
                    held = c.locked();
                    throw;
                }
                r = true;
            },
            std::ref(cv), std::ref(returned), std::ref(held_when_thrown));
        co_await settle();
        co_await cv.lock();
        cv.notify();
        cv.unlock(); // hands the lock to t, which has not run yet
        t.cancel();
        REQUIRE_THROWS_AS(co_await t, cancelled_error);
        CHECK_FALSE(returned);
        CHECK(held_when_thrown);
        CHECK_FALSE(cv.locked());
    }());
}

TEST_CASE("condition: a waiter handed the lock and cancelled before it ran passes the notification on",
          "[condition][giveback]") {
    // asyncio's test_cancelled_wakeup_relock: c0 is notified, gets the lock
    // back, and is cancelled before it runs; c1 gets the notification instead.
    run([]() -> task<> {
        condition cv;
        int state = 0;
        int consumed0 = 0, consumed1 = 0;
        auto consumer = [](condition& c, int& s, int& consumed) -> task<> {
            auto g = co_await c.scoped_lock();
            for (;;) {
                co_await c.wait_for([&] { return s != 0; });
                if (s < 0) co_return;
                --s;
                ++consumed;
            }
        };
        auto c0 = create_task(consumer, std::ref(cv), std::ref(state), std::ref(consumed0));
        auto c1 = create_task(consumer, std::ref(cv), std::ref(state), std::ref(consumed1));
        co_await settle();
        co_await cv.lock();
        state += 1;
        cv.notify(1); // to c0
        cv.unlock();  // the lock goes to c0, which has not run yet
        c0.cancel();  // c0 throws (holding the lock) and passes the notification to c1
        REQUIRE_THROWS_AS(co_await c0, cancelled_error);
        co_await settle();
        CHECK(state == 0); // c1 consumed the item, c0 never returned from wait()
        CHECK(consumed0 == 0);
        CHECK(consumed1 == 1);
        co_await cv.lock();
        state = -1;
        cv.notify_all();
        cv.unlock();
        co_await c1;
        CHECK_FALSE(cv.locked());
    }());
}

TEST_CASE("condition: conditions can share one mutex", "[condition]") {
    run([]() -> task<> {
        mutex m;
        condition not_empty(m), not_full(m);
        std::vector<int> buffer;
        std::vector<int> got;
        constexpr std::size_t cap = 2;
        auto producer = [](mutex& mx, condition& ne, condition& nf, std::vector<int>& buf) -> task<> {
            for (int i = 0; i < 6; ++i) {
                auto g = co_await mx.scoped_lock();
                co_await nf.wait_for([&] { return buf.size() < cap; });
                buf.push_back(i);
                ne.notify();
            }
        };
        auto consumer = [](mutex& mx, condition& ne, condition& nf, std::vector<int>& buf,
                           std::vector<int>& out) -> task<> {
            for (int i = 0; i < 6; ++i) {
                auto g = co_await mx.scoped_lock();
                co_await ne.wait_for([&] { return !buf.empty(); });
                out.push_back(buf.front());
                buf.erase(buf.begin());
                nf.notify();
            }
        };
        auto c = create_task(consumer, std::ref(m), std::ref(not_empty), std::ref(not_full), std::ref(buffer),
                             std::ref(got));
        auto p = create_task(producer, std::ref(m), std::ref(not_empty), std::ref(not_full), std::ref(buffer));
        co_await p;
        co_await c;
        CHECK(got == std::vector<int>{0, 1, 2, 3, 4, 5});
        CHECK(&not_empty.underlying_mutex() == &m);
        CHECK_FALSE(m.locked());
    }());
}

TEST_CASE("condition: debug mode rejects notify() from a foreign thread", "[condition]") {
    run([]() -> task<> {
        event_loop::current().set_debug(true);
        condition cv;
        std::vector<int> order;
        auto w = create_task(wait_and_record(cv, order, 1));
        co_await settle();
        co_await cv.lock();
        bool threw = false;
        std::thread th([&] {
            try {
                cv.notify();
            } catch (const std::logic_error&) {
                threw = true;
            }
        });
        th.join();
        CHECK(threw);
        cv.notify();
        cv.unlock();
        co_await w;
        CHECK(order == std::vector<int>{1});
    }());
}

TEST_CASE("condition: a waiter destroyed with its loop leaves the wait list", "[condition]") {
    condition cv;
    {
        event_loop loop;
        std::vector<int> order;
        loop.run_until_complete([](condition& c, std::vector<int>& o) -> task<> {
            create_task(wait_and_record(c, o, 1));
            co_await sleep(1ms);
        }(cv, order));
    }
    CHECK(cv.try_lock()); // no dangling waiter holds or awaits it
    cv.notify();          // nobody to wake
    cv.unlock();
}
