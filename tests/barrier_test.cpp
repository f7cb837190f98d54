#include <offload/barrier.hpp>

#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
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

task<> wait_and_record(barrier& b, std::vector<std::size_t>& indices) {
    std::size_t i = co_await b.wait();
    indices.push_back(i);
}

// Waits and records true on success, false on broken_barrier_error.
task<> wait_or_broken(barrier& b, std::vector<bool>& results) {
    try {
        co_await b.wait();
        results.push_back(true);
    } catch (const broken_barrier_error&) {
        results.push_back(false);
    }
}

} // namespace

TEST_CASE("barrier: parties tasks meet, then all go on with their arrival index", "[barrier]") {
    // asyncio's test_barrier and test_wait_task_multi_return.
    run([]() -> task<> {
        constexpr std::size_t n = 5;
        barrier b(n);
        CHECK(b.parties() == n);
        std::vector<std::size_t> indices;
        std::vector<task_handle<>> tasks;
        for (std::size_t i = 0; i + 1 < n; ++i) {
            tasks.push_back(create_task(wait_and_record(b, indices)));
            co_await settle();
            CHECK(b.n_waiting() == i + 1);
        }
        CHECK(indices.empty());
        std::size_t last = co_await b.wait(); // the last arrival releases the round
        CHECK(last == n - 1);
        CHECK(b.n_waiting() == 0);
        for (auto& t : tasks) co_await t;
        CHECK(indices == std::vector<std::size_t>{0, 1, 2, 3});
        CHECK_FALSE(b.broken());
    }());
}

TEST_CASE("barrier: it is reusable round after round", "[barrier]") {
    // asyncio's test_draining_state / test_blocking_tasks_while_draining.
    run([]() -> task<> {
        static constexpr int n = 3, rounds = 4;
        barrier b(n);
        std::vector<int> passed(rounds, 0);
        auto party = [](barrier& bar, std::vector<int>& p) -> task<> {
            for (int r = 0; r < rounds; ++r) {
                std::size_t i = co_await bar.wait();
                CHECK(i < n);
                // Nobody starts round r+1 before everybody finished round r.
                CHECK(p[r] < n);
                ++p[r];
            }
        };
        std::vector<task_handle<>> tasks;
        for (int i = 0; i < n; ++i) tasks.push_back(create_task(party, std::ref(b), std::ref(passed)));
        for (auto& t : tasks) co_await t;
        CHECK(passed == std::vector<int>(rounds, n));
        CHECK(b.n_waiting() == 0);
    }());
}

TEST_CASE("barrier: a single party passes at once", "[barrier]") {
    run([]() -> task<> {
        barrier b(1);
        std::size_t i = co_await b.wait();
        CHECK(i == 0);
        i = co_await b.wait();
        CHECK(i == 0);
    }());
    REQUIRE_THROWS_AS(barrier(0), std::invalid_argument);
}

TEST_CASE("barrier: a waiter cancelled while the round fills leaves it without breaking it", "[barrier]") {
    // asyncio's test_filling_tasks_cancel_one.
    run([]() -> task<> {
        barrier b(3);
        std::vector<std::size_t> indices;
        auto t1 = create_task(wait_and_record(b, indices));
        co_await settle();
        CHECK(b.n_waiting() == 1);
        auto t2 = create_task(wait_and_record(b, indices));
        co_await settle();
        CHECK(b.n_waiting() == 2);
        t1.cancel();
        co_await settle();
        CHECK(b.n_waiting() == 1);
        REQUIRE_THROWS_AS(co_await t1, cancelled_error);
        auto t3 = create_task(wait_and_record(b, indices));
        co_await settle();
        CHECK(b.n_waiting() == 2);
        auto t4 = create_task(wait_and_record(b, indices));
        co_await t2;
        co_await t3;
        co_await t4;
        std::sort(indices.begin(), indices.end());
        CHECK(indices == std::vector<std::size_t>{0, 1, 2}); // unique, although t1 left
        CHECK(b.n_waiting() == 0);
        CHECK_FALSE(b.broken());
    }());
}

TEST_CASE("barrier: a waiter cancelled after the release, before it ran, throws; the round stays complete",
          "[barrier][giveback]") {
    // asyncio's model: the released waiter has not resumed, so its wait()
    // throws cancelled_error; nothing is given back, the others pass.
    run([]() -> task<> {
        barrier b(3);
        std::vector<std::size_t> indices;
        auto t = create_task(wait_and_record(b, indices));
        auto u = create_task(wait_and_record(b, indices));
        co_await settle();
        std::size_t mine = co_await b.wait(); // releases t and u, which have not run yet
        t.cancel();
        REQUIRE_THROWS_AS(co_await t, cancelled_error);
        co_await u;
        CHECK(mine == 2);
        CHECK(indices == std::vector<std::size_t>{1}); // u's; t returned none
        CHECK_FALSE(b.broken());
        CHECK(b.n_waiting() == 0);
    }());
}

TEST_CASE("barrier: a cancel once the released waiter ran is thrown at its next await", "[barrier]") {
    run([]() -> task<> {
        barrier b(2);
        std::vector<std::size_t> indices;
        auto t = create_task(
            [](barrier& bar, std::vector<std::size_t>& out) -> task<> {
                out.push_back(co_await bar.wait());
                co_await sleep(1h); // the cancellation lands here
            },
            std::ref(b), std::ref(indices));
        co_await settle();
        std::size_t mine = co_await b.wait(); // releases t
        co_await settle();
        t.cancel();
        REQUIRE_THROWS_AS(co_await t, cancelled_error);
        CHECK(mine == 1);
        CHECK(indices == std::vector<std::size_t>{0});
        CHECK_FALSE(b.broken());
    }());
}

TEST_CASE("barrier: abort breaks the waiters and every later wait until reset", "[barrier]") {
    // asyncio's test_abort_barrier and test_abort_and_reset_barrier.
    run([]() -> task<> {
        barrier b(3);
        std::vector<bool> results;
        auto t1 = create_task(wait_or_broken(b, results));
        auto t2 = create_task(wait_or_broken(b, results));
        co_await settle();
        CHECK(b.n_waiting() == 2);
        b.abort();
        CHECK(b.broken());
        CHECK(b.n_waiting() == 0);
        co_await t1;
        co_await t2;
        CHECK(results == std::vector<bool>{false, false});
        REQUIRE_THROWS_AS(co_await b.wait(), broken_barrier_error);
        b.reset();
        CHECK_FALSE(b.broken());
        results.clear();
        std::vector<task_handle<>> tasks;
        for (int i = 0; i < 3; ++i) tasks.push_back(create_task(wait_or_broken(b, results)));
        for (auto& t : tasks) co_await t;
        CHECK(results == std::vector<bool>{true, true, true});
    }());
}

TEST_CASE("barrier: reset breaks the tasks waiting now and leaves the barrier usable", "[barrier]") {
    // asyncio's test_reset_barrier / test_reset_barrier_while_tasks_waiting.
    run([]() -> task<> {
        barrier b(3);
        std::vector<bool> results;
        auto t1 = create_task(wait_or_broken(b, results));
        auto t2 = create_task(wait_or_broken(b, results));
        co_await settle();
        b.reset();
        co_await t1;
        co_await t2;
        CHECK(results == std::vector<bool>{false, false});
        CHECK_FALSE(b.broken());
        CHECK(b.n_waiting() == 0);
        results.clear();
        std::vector<task_handle<>> tasks;
        for (int i = 0; i < 3; ++i) tasks.push_back(create_task(wait_or_broken(b, results)));
        for (auto& t : tasks) co_await t;
        CHECK(results == std::vector<bool>{true, true, true});
    }());
}

TEST_CASE("barrier: broken_barrier_error says what to do", "[barrier]") {
    broken_barrier_error e;
    const std::runtime_error& base = e;
    CHECK(std::string(base.what()).find("reset()") != std::string::npos);
}

TEST_CASE("barrier: debug mode rejects abort() from a foreign thread", "[barrier]") {
    run([]() -> task<> {
        event_loop::current().set_debug(true);
        barrier b(2);
        std::vector<std::size_t> indices;
        auto t = create_task(wait_and_record(b, indices));
        co_await settle();
        bool threw = false;
        std::thread th([&] {
            try {
                b.abort();
            } catch (const std::logic_error&) {
                threw = true;
            }
        });
        th.join();
        CHECK(threw);
        CHECK_FALSE(b.broken());
        std::size_t mine = co_await b.wait();
        co_await t;
        CHECK(mine == 1);
        CHECK(indices == std::vector<std::size_t>{0});
    }());
}

TEST_CASE("barrier: a waiter destroyed with its loop leaves the barrier", "[barrier]") {
    barrier b(2);
    {
        event_loop loop;
        std::vector<std::size_t> indices;
        loop.run_until_complete([](barrier& bar, std::vector<std::size_t>& o) -> task<> {
            create_task(wait_and_record(bar, o));
            co_await sleep(1ms);
        }(b, indices));
        CHECK(b.n_waiting() == 1);
    }
    CHECK(b.n_waiting() == 0); // the destroyed frame left the round
    CHECK_FALSE(b.broken());
}
