#include <offload/semaphore.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>
#include <offload/wait_for.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

// Lets every ready task run until it suspends again.
task<> settle() {
    for (int i = 0; i < 5; ++i) co_await sleep(0ms);
}

task<> acquire_and_record(semaphore& sem, std::vector<int>& order, int id) {
    co_await sem.acquire();
    order.push_back(id);
}

task<> acquire_and_hold(semaphore& sem, int& holding, int& max_holding) {
    auto g = co_await sem.scoped_acquire();
    struct count {
        int& n;
        ~count() { --n; } // also when a cancellation unwinds the sleep
    } c{++holding};
    max_holding = std::max(max_holding, holding);
    co_await sleep(1ms);
}

} // namespace

TEST_CASE("semaphore: acquire takes free permits at once and try_acquire never waits", "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(2);
        CHECK(sem.value() == 2);
        CHECK_FALSE(sem.locked());
        co_await sem.acquire();
        CHECK(sem.value() == 1);
        CHECK(sem.try_acquire());
        CHECK(sem.locked());
        CHECK_FALSE(sem.try_acquire());
        sem.release();
        sem.release();
        CHECK(sem.value() == 2);
    }());
}

TEST_CASE("semaphore: release wakes the oldest waiter", "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(0);
        std::vector<int> order;
        std::vector<task_handle<>> tasks;
        for (int i = 0; i < 4; ++i) {
            tasks.push_back(create_task(acquire_and_record(sem, order, i)));
            co_await settle(); // each waiter queues before the next one starts
        }
        CHECK(order.empty());
        for (int i = 0; i < 4; ++i) {
            sem.release();
            CHECK(sem.value() == 0); // handed to the waiter, not put back in the pool
            co_await settle();
            REQUIRE(order.size() == static_cast<std::size_t>(i + 1));
            CHECK(order.back() == i);
        }
        for (auto& t : tasks) co_await t;
        CHECK(sem.value() == 0);
    }());
}

TEST_CASE("semaphore: a newcomer cannot barge ahead of a woken waiter", "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(0);
        std::vector<int> order;
        auto waiter = create_task(acquire_and_record(sem, order, 1));
        co_await settle();
        sem.release(); // goes to the waiter, even though it has not run yet
        CHECK_FALSE(sem.try_acquire());
        co_await waiter;
        CHECK(order == std::vector<int>{1});
    }());
}

TEST_CASE("semaphore: a task that releases and acquires again queues behind the waiter it woke", "[semaphore]") {
    // asyncio's test_acquire_fifo_order_2: t2 and t3 are both handed a permit;
    // t2 runs first, releases, and acquires again: t3 (woken, not yet run) goes first.
    run([]() -> task<> {
        semaphore sem(1);
        std::vector<int> order;
        auto t1 = create_task(acquire_and_record(sem, order, 1));
        auto t2 = create_task(
            [](semaphore& s, std::vector<int>& o) -> task<> {
                co_await s.acquire();
                o.push_back(2);
                s.release();
                co_await s.acquire();
                o.push_back(4);
            },
            std::ref(sem), std::ref(order));
        auto t3 = create_task(acquire_and_record(sem, order, 3));
        co_await sleep(0ms); // t1 takes the permit, t2 and t3 queue
        sem.release();
        sem.release();
        co_await t1;
        co_await t2;
        co_await t3;
        CHECK(order == std::vector<int>{1, 2, 3, 4});
        CHECK(sem.value() == 0);
    }());
}

TEST_CASE("semaphore: a newcomer waits while a woken waiter has not run, then both are served", "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(0);
        std::vector<int> order;
        auto woken = create_task(acquire_and_record(sem, order, 1));
        co_await settle();
        sem.release(); // handed to `woken`, which has not run yet
        sem.release(); // nobody waits: a free permit...
        CHECK(sem.value() == 1);
        CHECK(sem.locked()); // ...that a newcomer may not take before `woken` runs
        if (sem.try_acquire()) {
            FAIL_CHECK("try_acquire barged ahead of a woken waiter");
            sem.release(); // so that the test ends instead of hanging
        }
        auto late = create_task(acquire_and_record(sem, order, 2));
        co_await woken;
        co_await late; // served from the free permit once `woken` ran
        CHECK(order == std::vector<int>{1, 2});
        CHECK(sem.value() == 0);
    }());
}

TEST_CASE("semaphore: a cancelled waiter is skipped, later waiters keep their order", "[semaphore]") {
    // asyncio's test_acquire_fifo_order_3 and test_acquire_hang.
    run([]() -> task<> {
        semaphore sem(0);
        std::vector<int> order;
        auto t1 = create_task(acquire_and_record(sem, order, 1));
        auto t2 = create_task(acquire_and_record(sem, order, 2));
        auto t3 = create_task(acquire_and_record(sem, order, 3));
        co_await settle();
        t1.cancel();
        co_await settle();
        sem.release();
        sem.release();
        REQUIRE_THROWS_AS(co_await t1, cancelled_error);
        co_await t2;
        co_await t3;
        CHECK(order == std::vector<int>{2, 3});
        CHECK(sem.value() == 0);
    }());
}

TEST_CASE("semaphore: a waiter cancelled after it was handed a permit passes it on; none is lost", "[semaphore]") {
    // asyncio's test_acquire_cancel_before_awaited, with the cancels after the
    // release: t1's permit, handed before it ran, goes on to t2, which is
    // cancelled too (after its grant) and passes it to t3; the second permit
    // goes to t4. When everybody gives back, the count is whole.
    run([]() -> task<> {
        semaphore sem(0);
        int held = 0; // how many tasks ever entered
        auto hold = [](semaphore& s, int& h) -> task<> {
            auto g = co_await s.scoped_acquire();
            ++h;
            co_await sleep(1h);
        };
        auto t1 = create_task(hold, std::ref(sem), std::ref(held));
        auto t2 = create_task(hold, std::ref(sem), std::ref(held));
        auto t3 = create_task(hold, std::ref(sem), std::ref(held));
        auto t4 = create_task(hold, std::ref(sem), std::ref(held));
        co_await settle();
        sem.release(); // to t1
        t1.cancel();   // before t1 ran: to t2
        t2.cancel();   // before t2 ran: to t3
        sem.release(); // to t4
        co_await settle();
        CHECK(t1.cancelled()); // neither entered
        CHECK(t2.cancelled());
        CHECK(held == 2); // t3 and t4
        CHECK_FALSE(t3.done());
        CHECK_FALSE(t4.done());
        CHECK(sem.value() == 0);
        t3.cancel();
        t4.cancel();
        co_await settle();
        CHECK(sem.value() == 2); // both permits are back
        CHECK(sem.try_acquire());
        CHECK(sem.try_acquire());
        CHECK_FALSE(sem.try_acquire());
    }());
}

TEST_CASE("semaphore: a permit handed to a cancelled waiter goes to the next in line, not to a newcomer",
          "[semaphore][giveback]") {
    run([]() -> task<> {
        semaphore sem(0);
        std::vector<int> order;
        auto t1 = create_task(acquire_and_record(sem, order, 1));
        auto t2 = create_task(acquire_and_record(sem, order, 2));
        auto t3 = create_task(acquire_and_record(sem, order, 3));
        co_await settle();
        sem.release(); // to t1
        CHECK_FALSE(sem.try_acquire()); // no barging while t1 is in line
        t1.cancel();                    // before t1 ran: the permit goes to t2
        CHECK_FALSE(sem.try_acquire()); // still no barging: t2 is in line
        co_await settle();
        CHECK(t1.cancelled());
        CHECK(order == std::vector<int>{2});
        CHECK_FALSE(t3.done());
        sem.release();
        co_await t3;
        CHECK(order == std::vector<int>{2, 3});
        CHECK(sem.value() == 0);
    }());
}

TEST_CASE("semaphore: a waiter woken and then cancelled gives its permit back to the count", "[semaphore][giveback]") {
    // asyncio's test_acquire_no_hang: c1 leaves `async with sem` (waking t2)
    // and cancels t2 before t2 runs: t2 never enters, and the permit is free.
    run([]() -> task<> {
        semaphore sem(1);
        bool entered = false;
        auto t2_body = [](semaphore& s, bool& e) -> task<> {
            auto g = co_await s.scoped_acquire();
            e = true;
        };
        task_handle<> t2;
        auto t1 = create_task(
            [](semaphore& s, task_handle<>& other) -> task<> {
                {
                    auto g = co_await s.scoped_acquire();
                    co_await sleep(0ms);
                }
                other.cancel();
            },
            std::ref(sem), std::ref(t2));
        t2 = create_task(t2_body, std::ref(sem), std::ref(entered));
        co_await t1;
        REQUIRE_THROWS_AS(co_await t2, cancelled_error);
        CHECK_FALSE(entered);
        CHECK(sem.value() == 1);
        co_await wait_for(sem.acquire(), 1s); // does not hang
    }());
}

TEST_CASE("semaphore: scoped_acquire bounds concurrency", "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(3);
        int holding = 0, max_holding = 0;
        std::vector<task_handle<>> tasks;
        for (int i = 0; i < 10; ++i) tasks.push_back(create_task(acquire_and_hold(sem, holding, max_holding)));
        for (auto& t : tasks) co_await t;
        CHECK(max_holding == 3);
        CHECK(sem.value() == 3);
    }());
}

TEST_CASE("semaphore: cancelling a waiting acquirer loses no permit", "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(1);
        co_await sem.acquire();
        std::vector<int> order;
        auto cancelled = create_task(acquire_and_record(sem, order, 1));
        auto next = create_task(acquire_and_record(sem, order, 2));
        co_await settle();
        CHECK(cancelled.cancel());
        co_await settle();
        CHECK(cancelled.cancelled());
        sem.release(); // skips the cancelled waiter
        co_await next;
        CHECK(order == std::vector<int>{2});
        CHECK(sem.value() == 0);
        sem.release();
        CHECK(sem.value() == 1); // back to the original value
        CHECK(sem.try_acquire());
    }());
}

TEST_CASE("semaphore: a cancel after the grant, before the task ran, throws at acquire and frees the permit",
          "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(0);
        bool got_permit = false;
        auto body = [](semaphore& s, bool& got) -> task<> {
            auto g = co_await s.scoped_acquire();
            got = true;
        };
        auto t = create_task(body, std::ref(sem), std::ref(got_permit));
        co_await settle();
        sem.release(); // grant: the waiter is scheduled but has not run
        CHECK(t.cancel());
        CHECK(sem.value() == 1); // given back at once
        co_await settle();
        CHECK_FALSE(got_permit);
        CHECK(t.cancelled());
        CHECK(sem.value() == 1);
    }());
}

TEST_CASE("semaphore: a cancel once the acquirer ran is thrown at its next await", "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(1);
        bool cancelled_later = false;
        auto body = [](semaphore& s, bool& later) -> task<> {
            auto g = co_await s.scoped_acquire();
            try {
                co_await sleep(1h);
            } catch (const cancelled_error&) {
                later = true;
                throw;
            }
        };
        auto t = create_task(body, std::ref(sem), std::ref(cancelled_later));
        co_await settle();
        CHECK(sem.value() == 0);
        t.cancel();
        co_await settle();
        CHECK(cancelled_later);
        CHECK(t.cancelled());
        CHECK(sem.value() == 1); // the guard gave the permit back while unwinding
    }());
}

TEST_CASE("semaphore: scoped_acquire releases on exception", "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(1);
        auto body = [](semaphore& s) -> task<> {
            auto g = co_await s.scoped_acquire();
            CHECK(s.locked());
            throw std::runtime_error("boom");
        };
        auto t = create_task(body, std::ref(sem));
        REQUIRE_THROWS_AS(co_await t, std::runtime_error);
        CHECK(sem.value() == 1);
        {
            auto g = co_await sem.scoped_acquire();
            CHECK(static_cast<bool>(g));
            auto moved = std::move(g);
            CHECK_FALSE(static_cast<bool>(g));
            CHECK(sem.value() == 0);
        }
        CHECK(sem.value() == 1);
    }());
}

TEST_CASE("semaphore: bounded_semaphore throws on release beyond its initial value", "[semaphore]") {
    run([]() -> task<> {
        bounded_semaphore sem(2);
        co_await sem.acquire();
        sem.release();
        CHECK(sem.value() == 2);
        REQUIRE_THROWS_AS(sem.release(), std::logic_error);
        CHECK(sem.value() == 2);
        semaphore& base = sem; // the check does not depend on the static type
        REQUIRE_THROWS_AS(base.release(), std::logic_error);
    }());
    semaphore plain(0);
    plain.release(); // an unbounded semaphore just grows, even outside a loop
    CHECK(plain.value() == 1);
}

TEST_CASE("semaphore: debug mode rejects release() from a foreign thread", "[semaphore]") {
    run([]() -> task<> {
        event_loop::current().set_debug(true);
        semaphore sem(0);
        std::vector<int> order;
        auto waiter = create_task(acquire_and_record(sem, order, 1));
        co_await settle();
        bool threw = false;
        std::thread th([&] {
            try {
                sem.release();
            } catch (const std::logic_error&) {
                threw = true;
            }
        });
        th.join();
        CHECK(threw);
        CHECK(order.empty());
        sem.release(); // from the loop thread it works
        co_await waiter;
        CHECK(order == std::vector<int>{1});
    }());
}

TEST_CASE("semaphore: a waiter destroyed with its loop leaves the wait list", "[semaphore]") {
    semaphore sem(0);
    {
        event_loop loop;
        std::vector<int> order;
        loop.run_until_complete([](semaphore& s, std::vector<int>& o) -> task<> {
            create_task(acquire_and_record(s, o, 1));
            co_await sleep(1ms);
        }(sem, order));
        CHECK(sem.locked());
    } // ~event_loop destroys the waiting frame
    sem.release();
    CHECK(sem.value() == 1); // no dangling waiter took it
}

TEST_CASE("semaphore: random cancellations never lose or duplicate a permit", "[semaphore]") {
    run([]() -> task<> {
        semaphore sem(3);
        int holding = 0, max_holding = 0;
        std::vector<task_handle<>> tasks;
        unsigned seed = 12345;
        auto next = [&seed] { return (seed = seed * 1103515245u + 12345u) >> 16; };
        for (int i = 0; i < 200; ++i) {
            tasks.push_back(create_task(acquire_and_hold(sem, holding, max_holding)));
            if (next() % 3 == 0) tasks[next() % tasks.size()].cancel();
            if (next() % 4 == 0) co_await sleep(0ms);
        }
        for (auto& t : tasks) {
            try {
                co_await t;
            } catch (const cancelled_error&) {
            }
        }
        CHECK(max_holding <= 3);
        CHECK(holding == 0);
        CHECK(sem.value() == 3);
    }());
}
