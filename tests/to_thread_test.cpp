#include <offload/to_thread.hpp>

#include <offload/gather.hpp>
#include <offload/run.hpp>
#include <offload/semaphore.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>
#include <offload/wait_for.hpp>

#include "alloc_count.hpp"
#include "user_executor.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

// Blocks a worker until opened; lets tests hold the pool busy deterministically.
struct gate {
    std::atomic<bool> open{false};
    std::atomic<int> entered{0};
    void pass() {
        entered.fetch_add(1);
        while (!open.load()) std::this_thread::sleep_for(200us);
    }
};

struct custom_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Yields to the loop until `pred()` holds (bounded, so a bug fails instead of hanging).
template <class P>
task<bool> eventually(P pred, std::chrono::milliseconds limit = 10s) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > until) co_return false;
        co_await sleep(1ms);
    }
    co_return true;
}

} // namespace

TEST_CASE("to_thread: returns the value and resumes on the loop thread", "[to_thread]") {
    run([]() -> task<> {
        auto loop_thread = std::this_thread::get_id();
        std::thread::id worker;
        int v = co_await to_thread(
            [&worker](int a, int b) {
                worker = std::this_thread::get_id();
                return a + b;
            },
            2, 3);
        CHECK(v == 5);
        CHECK(worker != loop_thread);
        CHECK(std::this_thread::get_id() == loop_thread);
    }());
}

TEST_CASE("to_thread: void results, move-only arguments and results, std::ref", "[to_thread]") {
    run([]() -> task<> {
        int touched = 0;
        co_await to_thread([](int& t) { t = 7; }, std::ref(touched));
        CHECK(touched == 7);
        auto p = co_await to_thread([](std::unique_ptr<int> in) { return std::make_unique<int>(*in * 2); },
                                    std::make_unique<int>(21));
        REQUIRE(p);
        CHECK(*p == 42);
    }());
}

TEST_CASE("to_thread: exceptions arrive with their exact type and message", "[to_thread]") {
    run([]() -> task<> {
        REQUIRE_THROWS_AS(co_await to_thread([] { throw std::invalid_argument("bad arg"); }), std::invalid_argument);
        bool caught = false;
        try {
            co_await to_thread([]() -> int { throw custom_error("custom"); });
        } catch (const custom_error& e) {
            caught = std::string(e.what()) == "custom";
        }
        CHECK(caught);
    }());
}

TEST_CASE("to_thread: the loop stays responsive while a 200 ms blocking call runs", "[to_thread]") {
    run([]() -> task<> {
        std::atomic<bool> done{false};
        auto blocker = create_task(
            [](std::atomic<bool>& d) -> task<> {
                co_await to_thread([] { std::this_thread::sleep_for(200ms); });
                d = true;
            },
            std::ref(done));
        // A 1 ms ticker measures how late the loop serves it meanwhile.
        std::chrono::nanoseconds worst{0};
        int ticks = 0;
        while (!done) {
            auto due = std::chrono::steady_clock::now() + 1ms;
            co_await sleep(1ms);
            auto late = std::chrono::steady_clock::now() - due;
            if (late > worst) worst = late;
            ++ticks;
        }
        co_await blocker;
        CHECK(ticks > 20);     // it kept ticking (not one tick after 200 ms)
        CHECK(worst < 100ms);  // well under the 200 ms the call blocked (generous: noisy CI)
    }());
}

TEST_CASE("to_thread: a queued call cancelled before it starts never runs", "[to_thread][cancel]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "t"});
    gate g;
    std::atomic<int> ran{0};
    run([](thread_pool& pool, gate& g, std::atomic<int>& ran) -> task<> {
        auto busy =
            create_task([](thread_pool& p, gate& g) -> task<> { co_await run_in_executor(p, [&g] { g.pass(); }); },
                        std::ref(pool), std::ref(g));
        bool entered = co_await eventually([&] { return g.entered.load() == 1; });
        REQUIRE(entered);
        auto queued =
            create_task([](thread_pool& p,
                           std::atomic<int>& r) -> task<> { co_await run_in_executor(p, [&r] { r.fetch_add(1); }); },
                        std::ref(pool), std::ref(ran));
        co_await sleep(5ms);
        CHECK(pool.stats().queued == 1);
        queued.cancel();
        REQUIRE_THROWS_AS(co_await queued, cancelled_error);
        CHECK(pool.stats().queued == 0);
        g.open = true;
        co_await busy;
    }(pool, g, ran));
    pool.shutdown();
    CHECK(ran.load() == 0);
    auto s = pool.stats();
    CHECK(s.cancelled == 1);
    CHECK(s.completed == 1);
}

TEST_CASE("to_thread: a running call that takes a stop_token is asked to stop, and the awaiter resumes at once",
          "[to_thread][cancel]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "t"});
    std::atomic<bool> saw_stop{false};
    std::atomic<bool> started{false};
    run([](thread_pool& pool, std::atomic<bool>& saw_stop, std::atomic<bool>& started) -> task<> {
        auto h = create_task(
            [](thread_pool& p, std::atomic<bool>& s, std::atomic<bool>& st) -> task<> {
                co_await run_in_executor(p, [&s, &st](std::stop_token tok) {
                    st = true;
                    auto until = std::chrono::steady_clock::now() + 20s;
                    while (!tok.stop_requested() && std::chrono::steady_clock::now() < until)
                        std::this_thread::sleep_for(100us);
                    s = tok.stop_requested();
                });
            },
            std::ref(pool), std::ref(saw_stop), std::ref(started));
        bool ok = co_await eventually([&] { return started.load(); });
        REQUIRE(ok);
        auto t0 = std::chrono::steady_clock::now();
        h.cancel();
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK(std::chrono::steady_clock::now() - t0 < 1s);
        // The worker stays counted as busy until the callable really returns.
        bool idle = co_await eventually([&] { return pool.stats().busy == 0; });
        CHECK(idle);
    }(pool, saw_stop, started));
    pool.shutdown();
    CHECK(saw_stop.load());
    auto s = pool.stats();
    CHECK(s.cancelled == 1);
    CHECK(s.completed == 0);
}

TEST_CASE("to_thread: wait_for around a call times out and stops a stop_token-aware call", "[to_thread][wait_for]") {
    run([]() -> task<> {
        // A call still queued when the time runs out is dropped and never runs
        // (on a busy machine a worker may not have taken it within 20 ms): then
        // try again with a longer limit, until a call that had started is stopped.
        struct flags {
            std::atomic<bool> started{false}, stopped{false};
        };
        bool stopped_while_running = false;
        for (auto limit : {20ms, 200ms, 2000ms, 10000ms}) {
            auto f = std::make_shared<flags>();
            REQUIRE_THROWS_AS(co_await wait_for(to_thread([f](std::stop_token tok) {
                                                    f->started = true;
                                                    while (!tok.stop_requested()) std::this_thread::sleep_for(100us);
                                                    f->stopped = true;
                                                }),
                                                limit),
                              timeout_error);
            if (!f->started.load()) continue;
            bool ok = co_await eventually([&] { return f->stopped.load(); });
            CHECK(ok);
            stopped_while_running = ok;
            break;
        }
        CHECK(stopped_while_running);
        int v = co_await wait_for(to_thread([] { return 3; }), 10s);
        CHECK(v == 3);
    }());
}

TEST_CASE("to_thread: 100k offloads bounded by a semaphore never exceed the bound in flight",
          "[to_thread][semaphore]") {
    constexpr int total = 100'000;
    constexpr std::size_t bound = 8;
    std::atomic<int> in_flight{0};
    std::atomic<int> peak{0};
    std::atomic<int> done{0};
    run([](std::atomic<int>& in_flight, std::atomic<int>& peak, std::atomic<int>& done) -> task<> {
        semaphore sem(bound);
        auto one = [](semaphore& sem, std::atomic<int>& in_flight, std::atomic<int>& peak,
                      std::atomic<int>& done) -> task<> {
            auto guard = co_await sem.scoped_acquire();
            co_await to_thread([&] {
                int now = in_flight.fetch_add(1) + 1;
                int p = peak.load();
                while (now > p && !peak.compare_exchange_weak(p, now)) {
                }
                in_flight.fetch_sub(1);
                done.fetch_add(1);
            });
        };
        std::vector<task<>> all;
        all.reserve(total);
        for (int i = 0; i < total; ++i) all.push_back(one(sem, in_flight, peak, done));
        co_await gather(std::move(all));
    }(in_flight, peak, done));
    CHECK(done.load() == total);
    CHECK(peak.load() <= static_cast<int>(bound));
    CHECK(peak.load() >= 1);
}

TEST_CASE("run_in_executor: a full bounded queue suspends the submitter without blocking the loop",
          "[thread_pool][backpressure]") {
    thread_pool pool({.workers = 1, .max_queued = 2, .name = "bp"});
    gate g;
    run([](thread_pool& pool, gate& g) -> task<> {
        auto submit = [](thread_pool& p, gate& g, std::atomic<int>& admitted) -> task<> {
            co_await run_in_executor(p, [&g, &admitted] {
                admitted.fetch_add(1);
                g.pass();
            });
        };
        std::atomic<int> admitted{0};
        std::vector<task_handle<>> hs;
        for (int i = 0; i < 4; ++i) hs.push_back(create_task(submit, std::ref(pool), std::ref(g), std::ref(admitted)));
        // One runs, two wait in the queue, the fourth waits for a slot.
        bool ok = co_await eventually([&] { return pool.stats().queued == 2 && g.entered.load() == 1; });
        REQUIRE(ok);
        co_await sleep(20ms); // the loop is free meanwhile: this sleep completes
        auto s = pool.stats();
        CHECK(s.queued == 2);
        CHECK(s.busy == 1);
        CHECK(s.max_queued == 2);
        CHECK(s.submitted == 4);
        g.open = true;
        for (auto& h : hs) co_await h;
        CHECK(admitted.load() == 4);
        CHECK(pool.stats().max_queued == 2); // never more than the bound
    }(pool, g));
}

TEST_CASE("thread_pool: shutdown with cancel_pending resolves every queued awaiter with executor_closed",
          "[thread_pool][shutdown]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "sd"});
    gate g;
    std::atomic<int> ran{0};
    run([](thread_pool& pool, gate& g, std::atomic<int>& ran) -> task<> {
        auto busy = create_task(
            [](thread_pool& p, gate& g) -> task<int> {
                co_await run_in_executor(p, [&g] { g.pass(); });
                co_return 1;
            },
            std::ref(pool), std::ref(g));
        bool ok = co_await eventually([&] { return g.entered.load() == 1; });
        REQUIRE(ok);
        std::vector<task_handle<>> queued;
        for (int i = 0; i < 5; ++i)
            queued.push_back(create_task([](thread_pool& p, std::atomic<int>& r)
                                             -> task<> { co_await run_in_executor(p, [&r] { r.fetch_add(1); }); },
                                         std::ref(pool), std::ref(ran)));
        co_await sleep(5ms);
        pool.shutdown(false, true);
        for (auto& q : queued) REQUIRE_THROWS_AS(co_await q, executor_closed);
        // New submissions fail at once.
        REQUIRE_THROWS_AS(co_await run_in_executor(pool, [] { return 0; }), executor_closed);
        g.open = true;
        int v = co_await busy; // the running call still finishes normally
        CHECK(v == 1);
    }(pool, g, ran));
    pool.shutdown();
    CHECK(ran.load() == 0);
}

TEST_CASE("thread_pool: shutdown can run through to_thread so the loop stays free while workers drain",
          "[thread_pool][shutdown]") {
    auto pool = std::make_unique<thread_pool>(thread_pool_options{.workers = 2, .max_queued = 0, .name = "drain"});
    std::atomic<int> ran{0};
    run([](thread_pool& pool, std::atomic<int>& ran) -> task<> {
        std::vector<task<>> calls;
        for (int i = 0; i < 20; ++i)
            calls.push_back([](thread_pool& p, std::atomic<int>& r) -> task<> {
                co_await run_in_executor(p, [&r] {
                    std::this_thread::sleep_for(1ms);
                    r.fetch_add(1);
                });
            }(pool, ran));
        auto all = create_task(gather(std::move(calls)));
        co_await sleep(1ms);
        co_await to_thread([&pool] { pool.shutdown(true, false); }); // waits for the queue to drain
        co_await all;
        CHECK(ran.load() == 20);
    }(*pool, ran));
}

TEST_CASE("thread_pool: 8 loops on 8 threads share one pool", "[thread_pool][threads]") {
    thread_pool pool({.workers = 4, .max_queued = 0, .name = "shared"});
    std::atomic<long> sum{0};
    std::vector<std::thread> loops;
    for (int t = 0; t < 8; ++t)
        loops.emplace_back([&pool, &sum, t] {
            long got = run([](thread_pool& p, int t) -> task<long> {
                long s = 0;
                for (int i = 0; i < 500; ++i)
                    s += co_await run_in_executor(
                        p, [](int a, int b) { return long(a) * b; }, t, i);
                std::vector<task<long>> par;
                for (int i = 0; i < 50; ++i)
                    par.push_back([](thread_pool& p, int i) -> task<long> {
                        co_return co_await run_in_executor(p, [i] { return long(i); });
                    }(p, i));
                auto parts = co_await gather(std::move(par));
                for (long x : parts) s += x;
                co_return s;
            }(pool, t));
            sum += got;
        });
    for (auto& l : loops) l.join();
    long expect = 0;
    for (int t = 0; t < 8; ++t) expect += long(t) * (499 * 500 / 2) + (49 * 50 / 2);
    CHECK(sum.load() == expect);
    auto s = pool.stats();
    CHECK(s.completed == 8 * 550);
    CHECK(s.submitted == 8 * 550);
}

TEST_CASE("thread_pool: stats add up after a random mix of calls, cancels and timeouts", "[thread_pool][stats]") {
    thread_pool pool({.workers = 2, .max_queued = 64, .name = "mix"});
    run([](thread_pool& pool) -> task<> {
        std::mt19937 rng(12345);
        std::vector<task_handle<>> hs;
        for (int i = 0; i < 10'000; ++i) {
            int kind = static_cast<int>(rng() % 10);
            int spin = static_cast<int>(rng() % 50);
            auto work = [spin](std::stop_token tok) {
                auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin);
                while (std::chrono::steady_clock::now() < until && !tok.stop_requested()) {
                }
                if (spin % 7 == 0) throw std::runtime_error("odd");
            };
            if (kind < 6) {
                hs.push_back(create_task(
                    [](thread_pool& p, decltype(work) w) -> task<> {
                        try {
                            co_await run_in_executor(p, w);
                        } catch (const std::runtime_error&) {
                        }
                    },
                    std::ref(pool), work));
            } else if (kind < 8) {
                hs.push_back(create_task(
                    [](thread_pool& p, decltype(work) w) -> task<> {
                        try {
                            co_await wait_for(run_in_executor(p, w), 20us);
                        } catch (const timeout_error&) {
                        } catch (const std::runtime_error&) {
                        }
                    },
                    std::ref(pool), work));
            } else {
                auto h = create_task(
                    [](thread_pool& p, decltype(work) w) -> task<> {
                        try {
                            co_await run_in_executor(p, w);
                        } catch (const std::runtime_error&) {
                        }
                    },
                    std::ref(pool), work);
                hs.push_back(h);
                if (rng() % 2) co_await sleep(0ms);
                h.cancel();
            }
            if (i % 100 == 0) {
                auto s = pool.stats();
                CHECK(s.submitted >= s.completed + s.failed + s.cancelled);
            }
        }
        for (auto& h : hs) {
            try {
                co_await h;
            } catch (const cancelled_error&) {
            }
        }
        bool idle = co_await eventually([&] { return pool.stats().busy == 0 && pool.stats().queued == 0; });
        CHECK(idle);
    }(pool));
    pool.shutdown();
    auto s = pool.stats();
    CHECK(s.submitted == s.completed + s.failed + s.cancelled);
    CHECK(s.busy == 0);
    CHECK(s.queued == 0);
    CHECK(s.max_queued <= 64);
    CHECK(s.failed > 0);
    CHECK(s.cancelled > 0);
}

// --- an executor of the user's --------------------------------------------------------

TEST_CASE("run_in_executor: an executor of the user's runs calls, values and exceptions come back",
          "[to_thread][executor]") {
    offload_test::user_executor ex;
    run([](offload_test::user_executor& ex) -> task<> {
        int v = co_await run_in_executor(
            ex, [](int a, int b) { return a * b; }, 6, 7);
        CHECK(v == 42);
        auto id = co_await run_in_executor(ex, [] { return std::this_thread::get_id(); });
        CHECK(id != std::this_thread::get_id());
        co_await run_in_executor(ex, [] {}); // void
        auto p = co_await run_in_executor(
            ex, [](std::unique_ptr<int> q) { return q; }, std::make_unique<int>(5));
        CHECK(*p == 5);
        REQUIRE_THROWS_AS(co_await run_in_executor(ex, [] { throw custom_error("boom"); }), custom_error);
        auto [a, b] = co_await gather(run_in_executor(ex, [] { return 1; }), run_in_executor(ex, [] { return 2; }));
        CHECK(a + b == 3);
    }(ex));
    ex.shutdown(true, false); // its thread counts a call after the call has resumed us
    CHECK(ex.stats().completed == 7);
}

TEST_CASE("run_in_executor: a call cancelled while it waits in a user executor's queue never runs",
          "[to_thread][executor][cancel]") {
    offload_test::user_executor ex;
    std::atomic<int> ran{0};
    ex.hold(true);
    run([](offload_test::user_executor& ex, std::atomic<int>& ran) -> task<> {
        auto queued =
            create_task([](offload_test::user_executor& e,
                           std::atomic<int>& r) -> task<> { co_await run_in_executor(e, [&r] { r.fetch_add(1); }); },
                        std::ref(ex), std::ref(ran));
        bool in_queue = co_await eventually([&] { return ex.queued() == 1; });
        REQUIRE(in_queue);
        queued.cancel();
        REQUIRE_THROWS_AS(co_await queued, cancelled_error);
        ex.hold(false); // the work runs now, and must do nothing
        bool drained = co_await eventually([&] { return ex.stats().completed == 1; });
        CHECK(drained);
    }(ex, ran));
    CHECK(ran.load() == 0);
}

TEST_CASE("run_in_executor: work a user executor drops unrun resolves with executor_closed", "[to_thread][executor]") {
    offload_test::user_executor ex;
    ex.hold(true);
    run([](offload_test::user_executor& ex) -> task<> {
        auto call = create_task([](offload_test::user_executor& e)
                                    -> task<int> { co_return co_await run_in_executor(e, [] { return 1; }); },
                                std::ref(ex));
        bool in_queue = co_await eventually([&] { return ex.queued() == 1; });
        REQUIRE(in_queue);
        ex.drop_queued();
        REQUIRE_THROWS_AS(co_await call, executor_closed);
    }(ex));
}

TEST_CASE("run_in_executor: an exception from a user executor's execute() reaches the awaiter",
          "[to_thread][executor]") {
    offload_test::user_executor ex;
    ex.refuse(true);
    run([](offload_test::user_executor& ex) -> task<> {
        try {
            co_await run_in_executor(ex, [] { return 1; });
            FAIL("execute() threw, the await did not");
        } catch (const std::runtime_error& e) {
            CHECK(std::string(e.what()) == "user_executor: refusing work");
        }
        ex.refuse(false);
        int v = co_await run_in_executor(ex, [] { return 3; });
        CHECK(v == 3);
    }(ex));
}

TEST_CASE("run_in_executor: a stop_token call on a user executor is asked to stop by wait_for",
          "[to_thread][executor][wait_for]") {
    offload_test::user_executor ex;
    std::atomic<bool> saw_stop{false};
    run([](offload_test::user_executor& ex, std::atomic<bool>& saw) -> task<> {
        auto slow = [&saw](std::stop_token st) {
            while (!st.stop_requested()) std::this_thread::sleep_for(1ms);
            saw = true;
        };
        REQUIRE_THROWS_AS(co_await wait_for(run_in_executor(ex, slow), 20ms), timeout_error);
    }(ex, saw_stop));
    ex.shutdown(true, false);
    CHECK(saw_stop.load());
}

// --- gather of a vector of thread calls (no task per call) -------------------------

namespace {

// Waits on the worker until stop is requested, then until `released` (so the
// worker takes no further call before the test says so).
struct stopper {
    std::atomic<bool> started{false};
    std::atomic<bool> saw_stop{false};
    std::atomic<bool> released{false};
    void block(std::stop_token tok) {
        started = true;
        auto until = std::chrono::steady_clock::now() + 20s;
        while (!tok.stop_requested() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(100us);
        saw_stop = tok.stop_requested();
        while (!released.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(100us);
    }
};

} // namespace

TEST_CASE("gather(calls): results of a vector of thread calls come back in order", "[to_thread][gather]") {
    thread_pool pool({.workers = 3, .max_queued = 0, .name = "g"});
    run([](thread_pool& pool) -> task<> {
        auto twice = [](int i) { return 2 * i; };
        std::vector<thread_call<decltype(twice), int>> calls;
        for (int i = 0; i < 2000; ++i) calls.push_back(run_in_executor(pool, twice, i));
        std::vector<int> out = co_await gather(std::move(calls));
        REQUIRE(out.size() == 2000);
        bool in_order = true;
        for (int i = 0; i < 2000; ++i) in_order = in_order && out[static_cast<std::size_t>(i)] == 2 * i;
        CHECK(in_order);

        // to_thread calls (the default pool), void results, move-only results, an empty vector.
        std::atomic<int> ran{0};
        auto bump = [&ran] { ran.fetch_add(1); };
        std::vector<thread_call<decltype(bump)>> voids;
        for (int i = 0; i < 100; ++i) voids.push_back(to_thread(bump));
        std::vector<std::monostate> none = co_await gather(std::move(voids));
        CHECK(none.size() == 100);
        CHECK(ran.load() == 100);

        auto boxed = [](int i) { return std::make_unique<int>(i); };
        std::vector<thread_call<decltype(boxed), int>> boxes;
        for (int i = 0; i < 10; ++i) boxes.push_back(to_thread(boxed, i));
        std::vector<std::unique_ptr<int>> got = co_await gather(std::move(boxes));
        REQUIRE(got.size() == 10);
        CHECK(*got[9] == 9);

        std::vector<thread_call<decltype(twice), int>> empty;
        std::vector<int> nothing = co_await gather(std::move(empty));
        CHECK(nothing.empty());
    }(pool));
    auto s = pool.stats();
    CHECK(s.completed == 2000);
    CHECK(s.submitted == 2000);
}

TEST_CASE("gather(calls): allocates nothing per call (no task, frame or node per gathered call)",
          "[to_thread][gather]") {
    thread_pool pool({.workers = 2, .max_queued = 0, .name = "g"});
    run([](thread_pool& pool) -> task<> {
        constexpr int n = 1000;
        auto twice = [](int i) { return 2 * i; };
        std::vector<thread_call<decltype(twice), int>> calls;
        calls.reserve(n);
        for (int i = 0; i < n; ++i) calls.push_back(run_in_executor(pool, twice, i)); // one node each
        long before = test::allocations_here();
        std::vector<int> out = co_await gather(std::move(calls));
        long during = test::allocations_here() - before;
        CHECK(out.size() == static_cast<std::size_t>(n));
        // The gather's frame and its result vector; a task per call would be >= 2 per call.
        if (OFFLOAD_TEST_COUNTS_ALLOCATIONS) CHECK(during < 20);
    }(pool));
}

TEST_CASE("gather(calls): a failing call withdraws the others and is rethrown", "[to_thread][gather][cancel]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "g"});
    stopper st;
    std::atomic<int> later{0};
    run([](thread_pool& pool, stopper& st, std::atomic<int>& later) -> task<> {
        // Call 0 throws, call 1 blocks until asked to stop, calls 2.. count.
        auto f = [&st, &later](std::stop_token tok, int i) {
            if (i == 0) throw custom_error("call 0 failed");
            if (i == 1)
                st.block(tok);
            else
                later.fetch_add(1);
            return i;
        };
        std::vector<thread_call<decltype(f), int>> calls;
        for (int i = 0; i < 200; ++i) calls.push_back(run_in_executor(pool, f, i));
        bool threw = false;
        try {
            co_await gather(std::move(calls));
        } catch (const custom_error& e) {
            threw = std::string(e.what()) == "call 0 failed";
        }
        CHECK(threw);
        st.released = true;
    }(pool, st, later));
    pool.shutdown();
    CHECK(later.load() == 0); // withdrawn while queued: never ran
    // Call 1 either never started or was asked to stop.
    CHECK(st.started.load() == st.saw_stop.load());
    auto s = pool.stats();
    CHECK(s.failed == 1);
    CHECK(s.cancelled == 199);
}

TEST_CASE("gather(calls): cancelling the gathering task withdraws every call and throws at once",
          "[to_thread][gather][cancel]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "g"});
    stopper st;
    std::atomic<int> later{0};
    run([](thread_pool& pool, stopper& st, std::atomic<int>& later) -> task<> {
        auto f = [&st, &later](std::stop_token tok, int i) {
            if (i == 0)
                st.block(tok);
            else
                later.fetch_add(1);
        };
        auto h = create_task(
            [](thread_pool& pool, decltype(f) f) -> task<std::size_t> {
                std::vector<thread_call<decltype(f), int>> calls;
                for (int i = 0; i < 50; ++i) calls.push_back(run_in_executor(pool, f, i));
                auto out = co_await gather(std::move(calls));
                co_return out.size();
            },
            std::ref(pool), f);
        bool started = co_await eventually([&] { return st.started.load(); });
        REQUIRE(started);
        h.cancel("enough");
        std::string message;
        try {
            co_await h;
        } catch (const cancelled_error& e) {
            message = e.what();
        }
        CHECK(message.find("enough") != std::string::npos);
        bool stopped = co_await eventually([&] { return st.saw_stop.load(); });
        CHECK(stopped);
        st.released = true;
    }(pool, st, later));
    pool.shutdown();
    CHECK(later.load() == 0);
    CHECK(pool.stats().cancelled == 50);
}

TEST_CASE("gather(return_exceptions, calls): every call runs; values and exceptions in order",
          "[to_thread][gather][return_exceptions]") {
    thread_pool pool({.workers = 2, .max_queued = 0, .name = "g"});
    run([](thread_pool& pool) -> task<> {
        auto f = [](int i) {
            if (i % 3 == 0) throw custom_error("bad " + std::to_string(i));
            return i;
        };
        std::vector<thread_call<decltype(f), int>> calls;
        for (int i = 0; i < 30; ++i) calls.push_back(run_in_executor(pool, f, i));
        auto out = co_await gather(return_exceptions, std::move(calls));
        REQUIRE(out.size() == 30);
        int values = 0, errors = 0;
        for (int i = 0; i < 30; ++i) {
            auto& o = out[static_cast<std::size_t>(i)];
            if (i % 3 == 0) {
                REQUIRE(!o.has_value());
                try {
                    std::rethrow_exception(o.error());
                } catch (const custom_error& e) {
                    if (std::string(e.what()) == "bad " + std::to_string(i)) ++errors;
                }
            } else if (o.has_value() && o.value() == i) {
                ++values;
            }
        }
        CHECK(values == 20);
        CHECK(errors == 10);
    }(pool));
    CHECK(pool.stats().completed == 20);
    CHECK(pool.stats().failed == 10);
}

TEST_CASE("gather(calls): a bounded pool admits the calls a few at a time; a cancellation withdraws slot waiters",
          "[to_thread][gather][backpressure]") {
    thread_pool pool({.workers = 1, .max_queued = 3, .name = "g"});
    stopper st;
    std::atomic<int> later{0};
    run([](thread_pool& pool, stopper& st, std::atomic<int>& later) -> task<> {
        auto twice = [](int i) { return 2 * i; };
        std::vector<thread_call<decltype(twice), int>> calls;
        for (int i = 0; i < 100; ++i) calls.push_back(run_in_executor(pool, twice, i));
        std::vector<int> out = co_await gather(std::move(calls));
        REQUIRE(out.size() == 100);
        CHECK(out[99] == 198);
        CHECK(pool.stats().max_queued <= 3);

        // Call 0 blocks the worker, 1-3 fill the queue, 4.. wait for slots; then the gather is cancelled.
        auto f = [&st, &later](std::stop_token tok, int i) {
            if (i == 0) return st.block(tok);
            if (i == 1) throw custom_error("second");
            later.fetch_add(1);
        };
        std::vector<thread_call<decltype(f), int>> more;
        for (int i = 0; i < 20; ++i) more.push_back(run_in_executor(pool, f, i));
        auto h =
            create_task([](std::vector<thread_call<decltype(f), int>>& c) -> task<> { co_await gather(std::move(c)); },
                        std::move(more));
        // The slot that call 0 frees when the worker takes it goes to call 3
        // once the loop hears of it, a step after the worker started: wait for both.
        bool started = co_await eventually([&] { return st.started.load() && pool.stats().queued == 3; });
        REQUIRE(started);
        h.cancel();
        bool cancelled = false;
        try {
            co_await h;
        } catch (const cancelled_error&) {
            cancelled = true;
        }
        CHECK(cancelled);
        st.released = true;
    }(pool, st, later));
    pool.shutdown();
    CHECK(later.load() == 0);
    auto s = pool.stats();
    CHECK(s.cancelled == 20);
    CHECK(s.queued == 0);
    CHECK(s.max_queued <= 3);
}

TEST_CASE("gather(calls): calls dropped by shutdown(cancel_pending) make the gather throw executor_closed",
          "[to_thread][gather][shutdown]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "g"});
    gate g;
    run([](thread_pool& pool, gate& g) -> task<> {
        auto f = [&g](int i) {
            if (i == 0) g.pass();
            return i;
        };
        using call = thread_call<decltype(f), int>;
        auto gathered = [](std::vector<call>& c) -> task<std::size_t> {
            co_return (co_await gather(std::move(c))).size();
        };
        auto kept = [](std::vector<call>& c) -> task<std::size_t> {
            std::size_t closed = 0;
            for (auto& o : co_await gather(return_exceptions, std::move(c))) {
                if (o.has_value()) continue;
                try {
                    std::rethrow_exception(o.error());
                } catch (const executor_closed&) {
                    ++closed;
                }
            }
            co_return closed;
        };
        std::vector<call> a, b;
        for (int i = 0; i < 5; ++i) a.push_back(run_in_executor(pool, f, i));
        for (int i = 1; i < 5; ++i) b.push_back(run_in_executor(pool, f, i));
        auto ha = create_task(gathered, std::move(a));
        auto hb = create_task(kept, std::move(b));
        bool entered = co_await eventually([&] { return g.entered.load() == 1; });
        REQUIRE(entered);
        pool.shutdown(false, true);
        bool closed = false;
        try {
            co_await ha;
        } catch (const executor_closed&) {
            closed = true;
        }
        CHECK(closed);
        std::size_t n_closed = co_await hb;
        CHECK(n_closed == 4);
        g.open = true;
        // A gather on a pool that is shut down throws at once.
        std::vector<call> c;
        c.push_back(run_in_executor(pool, f, 1));
        bool refused = false;
        try {
            co_await gather(std::move(c));
        } catch (const executor_closed&) {
            refused = true;
        }
        CHECK(refused);
    }(pool, g));
    pool.shutdown(); // the worker leaves g.pass() before g goes
}

TEST_CASE("gather(calls): calls on an executor of the user's", "[to_thread][gather][executor]") {
    offload_test::user_executor ex;
    run([](offload_test::user_executor& ex) -> task<> {
        auto sq = [](int i) { return i * i; };
        std::vector<thread_call<decltype(sq), int>> calls;
        for (int i = 0; i < 50; ++i) calls.push_back(run_in_executor(ex, sq, i));
        std::vector<int> out = co_await gather(std::move(calls));
        REQUIRE(out.size() == 50);
        CHECK(out[7] == 49);
    }(ex));
}

TEST_CASE("gather(calls): a call that was moved from (or already awaited) is refused", "[to_thread][gather]") {
    run([]() -> task<> {
        auto one = [] { return 1; };
        std::vector<thread_call<decltype(one)>> calls;
        calls.push_back(to_thread(one));
        auto stolen = std::move(calls[0]);
        bool refused = false;
        try {
            co_await gather(std::move(calls));
        } catch (const std::logic_error&) {
            refused = true;
        }
        CHECK(refused);
        int v = co_await std::move(stolen);
        CHECK(v == 1);
    }());
}

TEST_CASE("to_thread: awaiting a call allocates nothing once the loop has run a few (call nodes are recycled)",
          "[to_thread][alloc]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "a"});
    long during = -1;
    run([](thread_pool& pool, long& during) -> task<> {
        auto add = [](int a, int b) { return a + b; };
        for (int i = 0; i < 10; ++i) co_await run_in_executor(pool, add, i, 1); // warm up
        long before = test::allocations_here();
        long sum = 0;
        for (int i = 0; i < 1000; ++i) sum += co_await run_in_executor(pool, add, i, 1);
        during = test::allocations_here() - before;
        CHECK(sum == 500'500);
    }(pool, during));
    if (OFFLOAD_TEST_COUNTS_ALLOCATIONS && OFFLOAD_CALL_NODE_CACHE)
        CHECK(during < 10); // one node per call without recycling
}
