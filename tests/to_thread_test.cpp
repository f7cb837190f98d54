#include <offload/to_thread.hpp>

#include <offload/gather.hpp>
#include <offload/run.hpp>
#include <offload/semaphore.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>
#include <offload/wait_for.hpp>

#include "user_executor.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
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
    std::atomic<bool> stopped{false};
    run([](std::atomic<bool>& stopped) -> task<> {
        REQUIRE_THROWS_AS(co_await wait_for(to_thread([&stopped](std::stop_token tok) {
                                                while (!tok.stop_requested()) std::this_thread::sleep_for(100us);
                                                stopped = true;
                                            }),
                                            20ms),
                          timeout_error);
        bool ok = co_await eventually([&] { return stopped.load(); });
        CHECK(ok);
        int v = co_await wait_for(to_thread([] { return 3; }), 10s);
        CHECK(v == 3);
    }(stopped));
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
