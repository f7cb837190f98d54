#include <offload/process_pool.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>
#include <offload/to_thread.hpp>
#include <offload/wait_for.hpp>

#include "pp_workers.hpp"
#include "proc_check.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <new>
#include <poll.h>
#include <random>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace offload;
using namespace offload::test;
using namespace std::chrono_literals;

namespace {

// Runs `crasher` next to a healthy concurrent call; checks only the crasher
// failed, with worker_crashed; returns it (signal 0 and pid 0 when it did not crash).
template <class Fn>
task<worker_crashed> crash_beside_healthy_call(process_pool& pool, Fn crasher) {
    auto healthy = create_task(
        [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, pp::sleep_ms, 300); }, std::ref(pool));
    co_await sleep(20ms);
    worker_crashed got("none", 0, -1, 0);
    bool crashed = false;
    try {
        co_await run_in_executor(pool, crasher);
    } catch (const worker_crashed& e) {
        got = e;
        crashed = true;
    }
    CHECK(crashed);
    int h = co_await healthy;
    CHECK(h == 300);
    co_return got;
}

} // namespace

TEST_CASE("process_pool: a worker killed with SIGKILL fails only its own call", "[process_pool][crash]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    temp_dir dir;
    without_leaks([&] {
        process_pool pool({.workers = 2, .start = how});
        run([](process_pool& pool, std::filesystem::path marker) -> task<> {
            auto victim = create_task(
                [](process_pool& p, std::string path) -> task<int> {
                    co_return co_await run_in_executor(p, pp::pid_to_file_then_sleep, path, 20000);
                },
                std::ref(pool), marker.string());
            auto healthy = create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, pp::sleep_ms, 700); },
                std::ref(pool));
            int pid = co_await pid_from_file(marker);
            REQUIRE(pid > 0);
            auto pids = pool.worker_pids();
            CHECK(std::find(pids.begin(), pids.end(), pid) != pids.end());
            REQUIRE(::kill(pid, SIGKILL) == 0);
            int sig = 0;
            pid_t reported = 0;
            try {
                co_await victim;
            } catch (const worker_crashed& e) {
                sig = e.signal();
                reported = e.pid();
            }
            CHECK(sig == SIGKILL);
            CHECK(reported == pid);
            int h = co_await healthy;
            CHECK(h == 700);
            CHECK(process_gone(pid));
            // The pool healed: a following call works, on a new worker.
            int again = co_await run_in_executor(pool, pp::my_pid);
            CHECK(again != pid);
            auto st = pool.stats();
            CHECK(st.crashes == 1);
            CHECK(st.respawns == 1);
            CHECK(st.failed == 1);
            CHECK(st.completed == 2);
            pids = pool.worker_pids();
            CHECK(pids.size() == 2);
            CHECK(std::find(pids.begin(), pids.end(), pid) == pids.end());
        }(pool, dir.path / "victim"));
    });
}

TEST_CASE("process_pool: two workers killed at once each fail their own call, and both are replaced",
          "[process_pool][crash]") {
    // With forkserver, the second death may be reported while the pool waits for
    // the first replacement's pid: that report must not be lost.
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    temp_dir dir;
    without_leaks([&] {
        process_pool pool({.workers = 3, .start = how});
        run([](process_pool& pool, std::filesystem::path a, std::filesystem::path b) -> task<> {
            auto first = create_task(
                [](process_pool& p, std::string path) -> task<int> {
                    co_return co_await run_in_executor(p, pp::pid_to_file_then_sleep, path, 20000);
                },
                std::ref(pool), a.string());
            auto second = create_task(
                [](process_pool& p, std::string path) -> task<int> {
                    co_return co_await run_in_executor(p, pp::pid_to_file_then_sleep, path, 20000);
                },
                std::ref(pool), b.string());
            int pa = co_await pid_from_file(a);
            int pb = co_await pid_from_file(b);
            REQUIRE(pa > 0);
            REQUIRE(pb > 0);
            ::kill(pa, SIGKILL);
            ::kill(pb, SIGKILL);
            bool settled = co_await eventually([&] { return first.done() && second.done(); }, 20s);
            REQUIRE(settled);
            REQUIRE_THROWS_AS(co_await first, worker_crashed);
            REQUIRE_THROWS_AS(co_await second, worker_crashed);
            int v = co_await run_in_executor(pool, pp::sleep_ms, 1);
            CHECK(v == 1);
            bool replaced = co_await eventually([&pool] { return pool.stats().respawns == 2; });
            CHECK(replaced);
            CHECK(pool.worker_pids().size() == 3);
        }(pool, dir.path / "a", dir.path / "b"));
    });
}

TEST_CASE("process_pool: a segfault, abort() or exit(3) in a call fails only that call", "[process_pool][crash]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 2, .start = how});
        run([](process_pool& pool) -> task<> {
            worker_crashed segv = co_await crash_beside_healthy_call(pool, pp::crash_segv);
            INFO(segv.what());
            // Under ASan the sanitizer's own SIGSEGV handler may report and exit(1) instead.
            CHECK((segv.signal() == SIGSEGV || (OFFLOAD_TEST_SANITIZED && segv.exit_status() != 0)));
            CHECK(segv.pid() > 0);
            worker_crashed abrt = co_await crash_beside_healthy_call(pool, pp::crash_abort);
            CHECK(abrt.signal() == SIGABRT);
            CHECK(abrt.pid() > 0);
            CHECK(abrt.pid() != segv.pid());
            worker_crashed ex = co_await crash_beside_healthy_call(pool, pp::crash_exit3);
            CHECK(ex.signal() == 0);
            CHECK(ex.exit_status() == 3);
            CHECK(ex.pid() > 0);
            CHECK(std::string(ex.what()).find("status 3") != std::string::npos);
            int pid = co_await run_in_executor(pool, pp::my_pid);
            CHECK(pid > 0);
            auto st = pool.stats();
            CHECK(st.crashes == 3);
            CHECK(st.respawns == 3);
            CHECK(st.failed == 3);
            CHECK(st.completed == 4);
        }(pool));
    });
}

namespace {
void slow_init() { ::usleep(300'000); }
void init_killed() { std::raise(SIGKILL); }
void init_segv() { std::raise(SIGSEGV); }

// The broken_executor message of a call on `pool`, or "" if it did not throw one.
task<std::string> broken_message(process_pool& pool) {
    try {
        co_await run_in_executor(pool, pp::my_pid);
    } catch (const broken_executor& e) {
        co_return e.what();
    }
    co_return "";
}
} // namespace

TEST_CASE("process_pool: a worker SIGKILLed while it starts is replaced and the pool goes on",
          "[process_pool][crash]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 1, .start = how, .initializer = &slow_init});
        const auto first = pool.worker_pids();
        REQUIRE(first.size() == 1);
        ::kill(first[0], SIGKILL); // still in its 300 ms initializer
        run([](process_pool& pool, pid_t dead) -> task<> {
            int pid = co_await run_in_executor(pool, pp::my_pid);
            CHECK(pid != dead);
            CHECK(pid > 0);
            auto st = pool.stats();
            CHECK(st.crashes == 1);
            CHECK(st.respawns == 1);
            CHECK(st.completed == 1);
        }(pool, first[0]));
    });
}

TEST_CASE("process_pool: workers that keep dying while they start break the pool instead of looping",
          "[process_pool][crash]") {
    without_leaks([] {
        // SIGKILL while starting is retried a few times in a row, then given up.
        process_pool killed({.workers = 1, .initializer = &init_killed});
        std::string why = run(broken_message(killed));
        CHECK(why.find("before it was ready") != std::string::npos);
        CHECK(why.find("signal 9") != std::string::npos);
        CHECK(killed.stats().respawns == 3);
        // Any other death while starting (a crash in the initializer) would
        // repeat in every new worker: the pool breaks at once.
        process_pool crashed({.workers = 1, .initializer = &init_segv});
        std::string why2 = run(broken_message(crashed));
        CHECK(why2.find("before it was ready") != std::string::npos);
        CHECK(crashed.stats().respawns == 0);
    });
}

TEST_CASE("process_pool: with crash_policy::break_pool a crash fails pending and later calls",
          "[process_pool][crash]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 2, .start = how, .on_crash = crash_policy::break_pool});
        run([](process_pool& pool) -> task<> {
            auto running = create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, pp::sleep_ms, 5000); },
                std::ref(pool));
            co_await sleep(20ms);
            auto crasher = create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, pp::crash_abort); },
                std::ref(pool));
            co_await sleep(5ms);
            auto queued =
                create_task([](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, pp::my_pid); },
                            std::ref(pool));
            REQUIRE_THROWS_AS(co_await crasher, worker_crashed);
            REQUIRE_THROWS_AS(co_await running, broken_executor);
            REQUIRE_THROWS_AS(co_await queued, broken_executor);
            REQUIRE_THROWS_AS(co_await run_in_executor(pool, pp::my_pid), broken_executor);
            bool workers_gone = co_await eventually([&pool] { return pool.worker_pids().empty(); });
            CHECK(workers_gone);
        }(pool));
    });
}

namespace {
int die_after_ms(int ms) {
    ::usleep(static_cast<useconds_t>(ms) * 1000);
    std::raise(SIGKILL);
    return 0;
}
int twice(int x) { return 2 * x; }
} // namespace

TEST_CASE("process_pool: a result that arrives after break_pool failed its call is not counted again",
          "[process_pool][crash]") {
    // The loop is held while one worker dies and then the other's result
    // arrives: the death, seen first, breaks the pool and fails the running
    // call; its result, read next, must not take it off the busy count a
    // second time (busy wrapped to 2^64 - 1, and the loop then spun before
    // every wait, expecting a result that would never come).
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 2, .start = how, .on_crash = crash_policy::break_pool});
        run([](process_pool& pool) -> task<> {
            auto answering = create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, pp::sleep_ms, 150); },
                std::ref(pool));
            auto dying = create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, die_after_ms, 30); },
                std::ref(pool));
            bool both_busy = co_await eventually([&pool] { return pool.stats().busy == 2; });
            REQUIRE(both_busy);
            std::this_thread::sleep_for(500ms); // holds the loop: the death, then the result, wait for it
            REQUIRE_THROWS_AS(co_await dying, worker_crashed);
            try {
                co_await answering; // broken_executor, or its value if the result was read first
            } catch (const broken_executor&) {
            }
            co_await sleep(50ms);
            auto st = pool.stats();
            CHECK(st.busy == 0);
            CHECK(st.submitted == st.completed + st.failed + st.cancelled);
        }(pool));
    });
}

TEST_CASE("process_pool: a worker that dies after shutdown() is replaced while calls are queued so that they still run",
          "[process_pool][crash][shutdown]") {
    // shutdown without cancel_pending lets queued calls run; a worker dying
    // during that drain (its call crashed, or someone killed it) must not
    // strand them: they used to wait forever, with no worker left to run them.
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    auto way = GENERATE(0, 1, 2);
    INFO("start method: " << offload::to_string(how) << ", shutdown "
                          << (way == 0   ? "(wait = false)"
                              : way == 1 ? "(wait = true) from another thread"
                                         : "(wait = true) on the loop's thread"));
    without_leaks([how, way] {
        process_pool pool({.workers = 1, .start = how});
        run([](process_pool& pool, int way) -> task<> {
            auto dying = create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, die_after_ms, 300); },
                std::ref(pool));
            bool running = co_await eventually([&pool] { return pool.stats().busy == 1; });
            REQUIRE(running);
            std::vector<task_handle<int>> queued;
            for (int i = 0; i < 3; ++i) // bounded, so that a stranded call fails the test instead of hanging it
                queued.push_back(create_task(
                    [](process_pool& p, int i) -> task<int> {
                        co_return co_await wait_for(run_in_executor(p, twice, i), 15s);
                    },
                    std::ref(pool), i));
            bool waiting = co_await eventually([&pool] { return pool.stats().queued == 3; });
            REQUIRE(waiting);
            if (way == 0)
                pool.shutdown(false, false);
            else if (way == 1)
                co_await to_thread([&pool] { pool.shutdown(true, false); });
            else
                pool.shutdown(true, false); // drives the pool without the loop until every worker has exited
            REQUIRE_THROWS_AS(co_await dying, worker_crashed);
            for (int i = 0; i < 3; ++i) {
                int v = -1;
                try {
                    v = co_await queued[static_cast<std::size_t>(i)];
                } catch (const timeout_error&) {
                }
                CHECK(v == 2 * i);
            }
            REQUIRE_THROWS_AS(co_await run_in_executor(pool, twice, 1), executor_closed);
            bool gone = co_await eventually([&pool] { return pool.worker_pids().empty(); });
            CHECK(gone);
            CHECK(pool.stats().respawns == 1);
        }(pool, way));
    });
}

TEST_CASE("process_pool: wait_for kills a call that loops forever, and the pool goes on", "[process_pool][timeout]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 1, .start = how});
        run([](process_pool& pool) -> task<> {
            int first = co_await run_in_executor(pool, pp::my_pid); // the worker is up
            auto pids = pool.worker_pids();
            REQUIRE(pids.size() == 1);
            CHECK(pids[0] == first);
            auto t0 = std::chrono::steady_clock::now();
            REQUIRE_THROWS_AS(co_await wait_for(run_in_executor(pool, pp::spin_forever), 100ms), timeout_error);
            CHECK(std::chrono::steady_clock::now() - t0 < 5s);
            CHECK(process_gone(first));
            int second = co_await run_in_executor(pool, pp::my_pid);
            CHECK(second != first);
            auto st = pool.stats();
            CHECK(st.kills == 1);
            CHECK(st.crashes == 0);
        }(pool));
    });
}

TEST_CASE("process_pool: task_timeout kills a call that runs too long", "[process_pool][timeout]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 1, .start = how, .task_timeout = 150ms});
        run([](process_pool& pool) -> task<> {
            int first = co_await run_in_executor(pool, pp::my_pid);
            REQUIRE_THROWS_AS(co_await run_in_executor(pool, pp::spin_forever), timeout_error);
            CHECK(process_gone(first));
            int v = co_await run_in_executor(pool, pp::sleep_ms, 10); // well under the timeout
            CHECK(v == 10);
            CHECK(pool.stats().kills == 1);
        }(pool));
    });
}

TEST_CASE("process_pool: cancelling a running call kills its worker", "[process_pool][cancel]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 1, .start = how});
        run([](process_pool& pool) -> task<> {
            int first = co_await run_in_executor(pool, pp::my_pid);
            auto h = create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, pp::spin_forever); },
                std::ref(pool));
            bool busy = co_await eventually([&pool] { return pool.stats().busy == 1; });
            REQUIRE(busy);
            h.cancel();
            REQUIRE_THROWS_AS(co_await h, cancelled_error);
            CHECK(process_gone(first));
            int second = co_await run_in_executor(pool, pp::my_pid);
            CHECK(second != first);
            auto st = pool.stats();
            CHECK(st.cancelled == 1);
            CHECK(st.kills == 1);
            CHECK(st.crashes == 0);
        }(pool));
    });
}

TEST_CASE("process_pool: a queued call that is cancelled never runs", "[process_pool][cancel]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    temp_dir dir;
    without_leaks([&] {
        process_pool pool({.workers = 1, .start = how});
        run([](process_pool& pool, std::filesystem::path side_effect) -> task<> {
            auto busy = create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, pp::sleep_ms, 300); },
                std::ref(pool));
            bool running = co_await eventually([&pool] { return pool.stats().busy == 1; });
            REQUIRE(running);
            auto queued = create_task([](process_pool& p,
                                         std::string path) -> task<> { co_await run_in_executor(p, pp::touch, path); },
                                      std::ref(pool), side_effect.string());
            bool is_queued = co_await eventually([&pool] { return pool.stats().queued == 1; });
            REQUIRE(is_queued);
            queued.cancel();
            REQUIRE_THROWS_AS(co_await queued, cancelled_error);
            int b = co_await busy;
            CHECK(b == 300);
            co_await run_in_executor(pool, pp::sleep_ms, 1); // anything still queued would have run by now
            CHECK_FALSE(std::filesystem::exists(side_effect));
            CHECK(pool.stats().kills == 0);
        }(pool, dir.path / "ran"));
    });
}

TEST_CASE("process_pool: RLIMIT_CPU kills a call that burns more CPU time", "[process_pool][limits]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 1, .start = how, .limits = {.cpu_seconds = 1s}});
        run([](process_pool& pool) -> task<> {
            int sig = -1;
            try {
                co_await run_in_executor(pool, pp::spin_forever);
            } catch (const worker_crashed& e) {
                sig = e.signal();
            }
            CHECK((sig == SIGXCPU || sig == SIGKILL));
            int v = co_await run_in_executor(pool, pp::sleep_ms, 1);
            CHECK(v == 1);
        }(pool));
    });
}

TEST_CASE("process_pool: RLIMIT_AS turns a too large allocation into std::bad_alloc", "[process_pool][limits]") {
    if (OFFLOAD_TEST_SANITIZED) {
        SUCCEED("skipped: sanitizers reserve terabytes of address space, so RLIMIT_AS cannot be tested");
        return;
    }
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 1, .start = how, .limits = {.address_space = std::size_t(512) << 20}});
        run([](process_pool& pool) -> task<> {
            REQUIRE_THROWS_AS(co_await run_in_executor(pool, pp::allocate, std::size_t(2) << 30), std::bad_alloc);
            int small = co_await run_in_executor(pool, pp::allocate, std::size_t(1) << 20); // the worker lives on
            CHECK(small == 1);
            CHECK(pool.stats().crashes == 0);
        }(pool));
    });
}

namespace {

struct chaos_result {
    int values = 0, crashed = 0, cancelled = 0, other = 0, unresolved = 0, twice = 0, wrong = 0;
};

std::pair<int, int> echo_after(int i, int us) {
    ::usleep(static_cast<useconds_t>(us));
    return {i, static_cast<int>(::getpid())};
}

// One of the 1000 calls: records how it ended in outcome[i] (1 value, 100
// worker_crashed, 10000 cancelled, 1000000 anything else) and the pids that
// answered (those workers are past startup: safe to kill).
task<> chaos_call(process_pool& p, int i, int us, std::vector<int>& outcome, std::vector<pid_t>& ready, int& wrong) {
    try {
        auto [v, pid] = co_await run_in_executor(p, echo_after, i, us);
        if (v != i) ++wrong;
        if (std::find(ready.begin(), ready.end(), pid) == ready.end()) ready.push_back(pid);
        outcome[static_cast<std::size_t>(i)] += 1;
    } catch (const worker_crashed&) {
        outcome[static_cast<std::size_t>(i)] += 100;
    } catch (const cancelled_error&) {
        outcome[static_cast<std::size_t>(i)] += 10000;
    } catch (...) {
        outcome[static_cast<std::size_t>(i)] += 1000000;
    }
}

task<chaos_result> chaos(process_pool& pool, unsigned seed) {
    constexpr int n = 1000;
    std::mt19937 rng(seed);
    std::vector<int> outcome(n, 0);
    std::vector<pid_t> ready;
    int wrong = 0;
    std::vector<task_handle<>> calls;
    calls.reserve(n);
    for (int i = 0; i < n; ++i)
        calls.push_back(create_task(chaos_call(pool, i, static_cast<int>(rng() % 1500), outcome, ready, wrong)));
    int kills = 0, cancels = 0;
    for (;;) {
        co_await sleep(3ms);
        bool all_done = std::all_of(calls.begin(), calls.end(), [](auto& h) { return h.done(); });
        if (all_done) break;
        if (rng() % 3 == 0 && kills < 40) {
            // Kill a worker that has answered a call (so it is past startup), busy or idle.
            // (Killing a worker before it is ready breaks the pool by design: a
            // worker that cannot start would fail the same way again.)
            std::vector<pid_t> victims;
            for (pid_t pid : pool.worker_pids())
                if (std::find(ready.begin(), ready.end(), pid) != ready.end()) victims.push_back(pid);
            // Sometimes two at once: their deaths are then reported together.
            std::shuffle(victims.begin(), victims.end(), rng);
            std::size_t k = std::min<std::size_t>(victims.size(), 1 + rng() % 2);
            for (std::size_t j = 0; j < k; ++j)
                if (::kill(victims[j], SIGKILL) == 0) ++kills;
        } else if (cancels < 150) {
            auto& h = calls[rng() % calls.size()];
            if (!h.done()) {
                h.cancel();
                ++cancels;
            }
        }
    }
    for (std::size_t i = 0; i < calls.size(); ++i) {
        try {
            co_await calls[i];
        } catch (const cancelled_error&) {
            // Cancelled before its first step: it never reached the pool.
            if (outcome[i] == 0) outcome[i] = 10000;
        }
    }
    chaos_result r;
    r.wrong = wrong;
    for (int o : outcome) {
        if (o == 1)
            ++r.values;
        else if (o == 100)
            ++r.crashed;
        else if (o == 10000)
            ++r.cancelled;
        else if (o == 0)
            ++r.unresolved;
        else if (o == 1000000)
            ++r.other;
        else
            ++r.twice;
    }
    co_return r;
}

} // namespace

TEST_CASE("process_pool: 1000 calls with random worker kills and cancellations each resolve exactly once",
          "[process_pool][chaos]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    without_leaks([how] {
        process_pool pool({.workers = 3, .start = how});
        chaos_result r = run(chaos(pool, 12345));
        INFO("values " << r.values << ", crashed " << r.crashed << ", cancelled " << r.cancelled);
        CHECK(r.unresolved == 0);
        CHECK(r.twice == 0);
        CHECK(r.other == 0);
        CHECK(r.wrong == 0);
        CHECK(r.values + r.crashed + r.cancelled == 1000);
        CHECK(r.values > 0);
        auto v = run([](process_pool& p) -> task<std::pair<int, int>> {
            co_return co_await run_in_executor(p, echo_after, 7, 0);
        }(pool));
        CHECK(v.first == 7);
        auto st = pool.stats();
        CHECK(st.submitted == st.completed + st.failed + st.cancelled);
        CHECK(st.queued == 0);
        CHECK(st.busy == 0);
    });
}

// --- whole programs: the parent dies; a program forgot worker_main ----------------------

namespace {

struct program_run {
    pid_t pid = -1;
    int out = -1; // its stdout and stderr
};

program_run start_program(const std::vector<std::string>& args) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(p[1], 1);
        ::dup2(p[1], 2);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(p[1]);
    return {pid, p[0]};
}

// Reads until `stop(text)` holds, EOF, or `limit`; returns what it read.
template <class Stop>
std::string read_output(int fd, Stop stop, std::chrono::milliseconds limit) {
    std::string text;
    auto until = std::chrono::steady_clock::now() + limit;
    while (!stop(text)) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd pf{fd, POLLIN, 0};
        if (::poll(&pf, 1, static_cast<int>(left.count())) <= 0) continue;
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    return text;
}

std::vector<pid_t> parse_pids(const std::string& text) {
    std::vector<pid_t> pids;
    auto at = text.find("pids:");
    if (at == std::string::npos) return pids;
    std::istringstream in(text.substr(at + 5, text.find('\n', at) - at - 5));
    int pid;
    while (in >> pid) pids.push_back(pid);
    return pids;
}

// waitpid with a deadline; returns the wait status, or -1 on timeout.
int wait_exit(pid_t pid, std::chrono::milliseconds limit) {
    int status = -1;
    bool exited = wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, limit);
    return exited ? status : -1;
}

} // namespace

TEST_CASE("process_pool: workers die with their parent when it is killed with SIGKILL", "[process_pool][parent]") {
    auto how = GENERATE(std::string("fork"), std::string("spawn"), std::string("forkserver"));
    INFO("start method: " << how);
    without_leaks([&] {
        program_run prog = start_program({OFFLOAD_PP_PARENT_DEATH, how});
        std::string out = read_output(
            prog.out, [](const std::string& t) { return t.find('\n') != std::string::npos; }, 30s);
        INFO("helper said: " << out);
        std::vector<pid_t> pids = parse_pids(out);
        std::vector<pid_t> family = children_of(prog.pid); // workers, or the forkserver
        CHECK(pids.size() == 2);
        for (pid_t pid : pids) CHECK_FALSE(process_gone(pid));
        ::kill(prog.pid, SIGKILL);
        int status = wait_exit(prog.pid, 10s);
        CHECK((status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
        ::close(prog.out);
        family.insert(family.end(), pids.begin(), pids.end());
        for (pid_t pid : family) {
            INFO("pid " << pid);
            bool gone = wait_until([pid] { return process_gone(pid); }, 5s);
            CHECK(gone);
        }
    });
}

TEST_CASE("process_pool: a spawn pool in a program that forgot worker_main fails fast, naming worker_main",
          "[process_pool][spawn]") {
    without_leaks([] {
        auto t0 = std::chrono::steady_clock::now();
        program_run prog = start_program({OFFLOAD_PP_FORGOT_WORKER_MAIN});
        std::string out = read_output(
            prog.out, [](const std::string&) { return false; }, 20s); // until EOF
        ::close(prog.out);
        int status = wait_exit(prog.pid, 5s);
        if (status == -1) { // hung: do not leave it behind
            ::kill(prog.pid, SIGKILL);
            ::waitpid(prog.pid, nullptr, 0);
        }
        INFO("helper said: " << out);
        CHECK(std::chrono::steady_clock::now() - t0 < 25s);
        REQUIRE(status != -1);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 1);
        CHECK(out.find("worker_main") != std::string::npos);
        CHECK(out.find("unexpected") == std::string::npos);
        for (pid_t pid : parse_pids(out)) {
            INFO("worker pid " << pid);
            bool gone = wait_until([pid] { return process_gone(pid); }, 5s);
            CHECK(gone);
        }
    });
}

TEST_CASE("process_pool: the forkserver outlives SIGINT and SIGTERM (Ctrl-C to the process group)",
          "[process_pool][forkserver]") {
    without_leaks([] {
        process_pool pool({.workers = 1, .start = start_method::forkserver});
        run([](process_pool& pool) -> task<> {
            int worker = co_await run_in_executor(pool, pp::my_pid);
            // Our children: the forkserver (the workers are its children).
            std::vector<pid_t> servers;
            for (pid_t c : children_of(::getpid()))
                if (c != worker) servers.push_back(c);
            REQUIRE(servers.size() == 1);
            ::kill(servers[0], SIGINT);
            ::kill(servers[0], SIGTERM);
            // A fatal signal would have ended it by now; a respawn needs it alive.
            ::kill(worker, SIGKILL);
            bool respawned = co_await eventually([&] { return pool.stats().respawns == 1; });
            REQUIRE(respawned);
            int next = co_await run_in_executor(pool, pp::my_pid);
            CHECK(next != worker);
            CHECK_FALSE(process_gone(servers[0]));
        }(pool));
    });
}

// The forkserver's workers die with it (PDEATHSIG), and only it could report
// their exits: the pool must count them dead itself. It waited for reports that
// never came, and its destructor polled the server's hung-up socket, which is
// always readable, for its whole 7 s bound at 100% of a core.
TEST_CASE("process_pool: a killed forkserver breaks the pool, whose destructor does not spin",
          "[process_pool][forkserver]") {
    without_leaks([] {
        auto cpu_seconds = [] {
            rusage u{};
            ::getrusage(RUSAGE_SELF, &u);
            return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
                   static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
        };
        double before = 0;
        {
            process_pool pool({.workers = 1, .start = start_method::forkserver});
            run([](process_pool& pool) -> task<> {
                int worker = co_await run_in_executor(pool, pp::my_pid);
                std::vector<pid_t> servers;
                for (pid_t c : children_of(::getpid()))
                    if (c != worker) servers.push_back(c);
                REQUIRE(servers.size() == 1);
                ::kill(servers[0], SIGKILL);
                bool worker_gone = co_await eventually([&] { return process_gone(worker); });
                REQUIRE(worker_gone);
                bool broken = false;
                try {
                    (void)co_await run_in_executor(pool, pp::my_pid);
                } catch (const broken_executor& e) {
                    broken = true;
                    INFO(e.what());
                }
                CHECK(broken);
            }(pool));
            before = cpu_seconds();
        }
        CHECK(cpu_seconds() - before < 1.0);
    });
}
