// Conformance of process_pool under each start method (fork, spawn,
// forkserver): results, exceptions, crashes, kills on timeout and
// cancellation, recycling, payloads; each test checks that no fd and no
// child process is left behind once the pool is gone.
#include <offload/process_pool.hpp>

#include <offload/event_loop.hpp>
#include <offload/gather.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>
#include <offload/to_thread.hpp>
#include <offload/wait_for.hpp>

#include <catch2/catch.hpp>

#include "fd_count.hpp"
#include "pp_workers.hpp"
#include "proc_check.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

// Checks that whatever the test did left no fd and no child behind.
struct no_leaks {
    std::size_t fds = test::fd_count();
    std::size_t children = test::child_count();
    void check() const {
        CHECK(test::fd_count() == fds);
        // Reaping is synchronous in the pool's destructor; allow the kernel a moment.
        for (int i = 0; i < 100 && test::child_count() != children; ++i) ::usleep(10'000);
        CHECK(test::child_count() == children);
    }
};

bool alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

int add(int a, int b) { return a + b; }
int my_pid() { return static_cast<int>(::getpid()); }
std::string shout(std::string s) { return s + "!"; }
int throws_invalid(int) { throw std::invalid_argument("bad value"); }
int throws_range(int) { throw std::out_of_range("too far"); }
struct custom_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};
int throws_custom(int) { throw custom_failure("custom"); }
int die_by(int sig) {
    if (sig == 0) std::exit(3);
    if (sig == SIGABRT) std::abort();
    ::raise(sig);
    return 0;
}
int spin_forever(int) {
    volatile std::uint64_t n = 0;
    for (;;) n = n + 1;
}
int sleep_ms(int ms) {
    ::usleep(static_cast<useconds_t>(ms) * 1000);
    return ms;
}
std::uint64_t fnv1a(const std::vector<std::uint8_t>& v) {
    std::uint64_t h = 1469598103934665603ull;
    for (auto b : v) h = (h ^ b) * 1099511628211ull;
    return h;
}
std::vector<std::uint8_t> echo(std::vector<std::uint8_t> v) { return v; }

struct point {
    int x;
    double y;
    std::string label;
};
point move_point(point p, int dx) { return {p.x + dx, p.y * 2, p.label + "'"}; }

} // namespace

TEST_CASE("process_pool: calls return typed results under every start method", "[process_pool]") {
    auto m = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO(offload::to_string(m));
    no_leaks before;
    {
        process_pool pool({.workers = 2, .start = m});
        run([](process_pool& p) -> task<> {
            int v = co_await run_in_executor(p, add, 2, 40);
            CHECK(v == 42);
            auto s = co_await run_in_executor(p, shout, std::string("hey"));
            CHECK(s == "hey!");
            int l = co_await run_in_executor(
                p, [](int x) { return x * 3; }, 7);
            CHECK(l == 21);
            // Named, not a braced temporary: g++ 12 copies a braced temporary that
            // holds a std::string bitwise into the coroutine frame (a compiler bug).
            point start{1, 1.5, "a"};
            point q = co_await run_in_executor(p, move_point, start, 2);
            CHECK(q.x == 3);
            CHECK(q.y == 3.0);
            CHECK(q.label == "a'");
            co_await run_in_executor(
                p, [](int) {}, 1); // void result
            int pid = co_await run_in_executor(p, my_pid);
            CHECK(pid != ::getpid());
            auto s2 = p.stats();
            CHECK(s2.completed == 6);
            CHECK(s2.bytes_sent > 0);
        }(pool));
    }
    before.check();
}

TEST_CASE("process_pool: standard exceptions come back as themselves, others as remote_error", "[process_pool]") {
    auto m = GENERATE(start_method::fork, start_method::forkserver);
    process_pool pool({.workers = 1, .start = m});
    run([](process_pool& p) -> task<> {
        bool invalid = false;
        try {
            co_await run_in_executor(p, throws_invalid, 1);
        } catch (const std::invalid_argument& e) {
            invalid = std::string(e.what()) == "bad value";
        }
        CHECK(invalid);
        REQUIRE_THROWS_AS(co_await run_in_executor(p, throws_range, 1), std::out_of_range);
        bool remote = false;
        try {
            co_await run_in_executor(p, throws_custom, 1);
        } catch (const remote_error& e) {
            remote = e.type_name().find("custom_failure") != std::string::npos && std::string(e.what()) == "custom";
        }
        CHECK(remote);
        CHECK(p.stats().failed == 3);
        int v = co_await run_in_executor(p, add, 1, 1); // the worker survived all of it
        CHECK(v == 2);
    }(pool));
}

TEST_CASE("process_pool: a worker that dies fails only its own call, and the pool heals", "[process_pool][crash]") {
    auto m = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    auto how = GENERATE(SIGKILL, SIGSEGV, SIGABRT, 0);
    INFO(offload::to_string(m) << " signal " << how);
    no_leaks before;
    {
        process_pool pool({.workers = 2, .start = m});
        run([](process_pool& p, int how) -> task<> {
            // A neighbour call runs at the same time and must not notice.
            auto neighbour =
                create_task([](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, sleep_ms, 200); },
                            std::ref(p));
            bool started = co_await test::eventually([&p] { return p.stats().busy == 1; });
            REQUIRE(started);
            bool crashed = false;
            try {
                co_await run_in_executor(p, die_by, how);
            } catch (const worker_crashed& e) {
                crashed = true;
                CHECK(e.pid() > 0);
                if (how == 0) {
                    CHECK(e.signal() == 0);
                    CHECK(e.exit_status() == 3);
                } else {
                    CHECK(e.signal() == how);
                }
            }
            CHECK(crashed);
            int n = co_await neighbour;
            CHECK(n == 200);
            int v = co_await run_in_executor(p, add, 20, 22);
            CHECK(v == 42);
            auto s = p.stats();
            CHECK(s.crashes == 1);
            CHECK(s.respawns == 1);
            CHECK(p.worker_pids().size() == 2);
        }(pool, how));
    }
    before.check();
}

TEST_CASE("process_pool: kill -9 of a busy worker from outside fails its call with worker_crashed",
          "[process_pool][crash]") {
    no_leaks before;
    {
        process_pool pool({.workers = 1});
        run([](process_pool& p) -> task<> {
            int pid = co_await run_in_executor(p, my_pid);
            auto call = create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, sleep_ms, 10'000); },
                std::ref(p));
            bool started = co_await test::eventually([&p] { return p.stats().busy == 1; });
            REQUIRE(started);
            ::kill(pid, SIGKILL);
            bool crashed = false;
            try {
                co_await call;
            } catch (const worker_crashed& e) {
                crashed = e.signal() == SIGKILL && e.pid() == pid;
            }
            CHECK(crashed);
            int again = co_await run_in_executor(p, my_pid);
            CHECK(again != pid);
        }(pool));
    }
    before.check();
}

TEST_CASE("process_pool: with crash_policy::break_pool a crash breaks the pool", "[process_pool][crash]") {
    process_pool pool({.workers = 1, .on_crash = crash_policy::break_pool});
    run([](process_pool& p) -> task<> {
        auto queued = create_task(
            [](process_pool& p) -> task<int> {
                co_await sleep(5ms);
                co_return co_await run_in_executor(p, add, 1, 2);
            },
            std::ref(p));
        REQUIRE_THROWS_AS(co_await run_in_executor(p, die_by, SIGKILL), worker_crashed);
        REQUIRE_THROWS_AS(co_await queued, broken_executor);
        REQUIRE_THROWS_AS(co_await run_in_executor(p, add, 1, 2), broken_executor);
    }(pool));
}

TEST_CASE("process_pool: a timed-out call kills its worker, which is replaced", "[process_pool][timeout]") {
    auto m = GENERATE(start_method::fork, start_method::forkserver);
    no_leaks before;
    {
        process_pool pool({.workers = 1, .start = m});
        run([](process_pool& p) -> task<> {
            int pid = co_await run_in_executor(p, my_pid);
            REQUIRE_THROWS_AS(co_await wait_for(run_in_executor(p, spin_forever, 0), 100ms), timeout_error);
            CHECK_FALSE(alive(pid)); // reaped before the timeout was reported
            int v = co_await run_in_executor(p, add, 2, 2);
            CHECK(v == 4);
            CHECK(p.stats().kills == 1);
        }(pool));
    }
    before.check();
}

TEST_CASE("process_pool: task_timeout kills a call that runs too long", "[process_pool][timeout]") {
    process_pool pool({.workers = 1, .task_timeout = 100ms});
    run([](process_pool& p) -> task<> {
        REQUIRE_THROWS_AS(co_await run_in_executor(p, spin_forever, 0), timeout_error);
        int v = co_await run_in_executor(p, sleep_ms, 1);
        CHECK(v == 1);
    }(pool));
}

TEST_CASE("process_pool: cancelling a running call kills its worker; a cancelled queued call never runs",
          "[process_pool][cancel]") {
    process_pool pool({.workers = 1});
    run([](process_pool& p) -> task<> {
        int pid = co_await run_in_executor(p, my_pid);
        auto running = create_task(
            [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, spin_forever, 0); }, std::ref(p));
        auto queued = create_task([](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, my_pid); },
                                  std::ref(p));
        bool started = co_await test::eventually([&p] { return p.stats().busy == 1 && p.stats().queued == 1; });
        REQUIRE(started);
        queued.cancel();
        REQUIRE_THROWS_AS(co_await queued, cancelled_error);
        running.cancel();
        REQUIRE_THROWS_AS(co_await running, cancelled_error);
        CHECK_FALSE(alive(pid));
        auto s = p.stats();
        CHECK(s.cancelled == 2);
        CHECK(s.submitted == s.completed + s.failed + s.cancelled);
    }(pool));
}

TEST_CASE("process_pool: max_tasks_per_child recycles workers", "[process_pool]") {
    process_pool pool({.workers = 1, .max_tasks_per_child = 2});
    auto pids = run([](process_pool& p) -> task<std::vector<int>> {
        std::vector<int> out;
        for (int i = 0; i < 6; ++i) out.push_back(co_await run_in_executor(p, my_pid));
        co_return out;
    }(pool));
    CHECK(std::set<int>(pids.begin(), pids.end()).size() == 3);
    CHECK(pids[0] == pids[1]);
    CHECK(pids[1] != pids[2]);
}

namespace {
void count_start() {
    std::ofstream(std::string("/tmp/offload-init-") + std::to_string(::getppid()), std::ios::app) << ::getpid() << "\n";
}
} // namespace

TEST_CASE("process_pool: the initializer runs once in every worker, respawns included", "[process_pool]") {
    std::string log = std::string("/tmp/offload-init-") + std::to_string(::getpid());
    std::remove(log.c_str());
    {
        process_pool pool(
            {.workers = 1, .start = start_method::fork, .max_tasks_per_child = 1, .initializer = &count_start});
        run([](process_pool& p) -> task<> {
            for (int i = 0; i < 3; ++i) co_await run_in_executor(p, my_pid);
        }(pool));
    }
    std::ifstream f(log);
    std::vector<std::string> lines;
    for (std::string l; std::getline(f, l);) lines.push_back(l);
    std::remove(log.c_str());
    // 3 calls, one per worker, plus the replacement started after the last one.
    CHECK(lines.size() >= 3);
    CHECK(std::set<std::string>(lines.begin(), lines.end()).size() == lines.size());
}

TEST_CASE("process_pool: payloads from 0 bytes to 64 MiB round-trip intact", "[process_pool][payload]") {
    auto m = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    process_pool pool({.workers = 1, .start = m});
    run([](process_pool& p) -> task<> {
        for (std::size_t size :
             {std::size_t(0), std::size_t(1), std::size_t(4095), std::size_t(1) << 20, std::size_t(64) << 20}) {
            std::vector<std::uint8_t> data(size);
            for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::uint8_t>(i * 2654435761u >> 13);
            auto h = fnv1a(data);
            auto worker_hash = co_await run_in_executor(p, fnv1a, data);
            CHECK(worker_hash == h);
            auto back = co_await run_in_executor(p, echo, std::move(data));
            CHECK(back.size() == size);
            CHECK(fnv1a(back) == h);
        }
    }(pool));
}

TEST_CASE("process_pool: shutdown from another thread drains, then refuses calls", "[process_pool][shutdown]") {
    process_pool pool({.workers = 2});
    run([](process_pool& p) -> task<> {
        std::vector<task<int>> calls;
        for (int i = 0; i < 6; ++i)
            calls.push_back(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, sleep_ms, 20); }(p));
        auto all = create_task(gather(std::move(calls)));
        co_await sleep(5ms);
        co_await to_thread([&p] { p.shutdown(true, false); });
        auto got = co_await all;
        CHECK(got.size() == 6);
        REQUIRE_THROWS_AS(co_await run_in_executor(p, add, 1, 1), executor_closed);
        CHECK(p.worker_pids().empty());
    }(pool));
}

TEST_CASE("process_pool: shutdown with cancel_pending resolves queued calls with executor_closed",
          "[process_pool][shutdown]") {
    process_pool pool({.workers = 1});
    run([](process_pool& p) -> task<> {
        auto running = create_task(
            [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, sleep_ms, 100); }, std::ref(p));
        std::vector<task_handle<int>> queued;
        for (int i = 0; i < 3; ++i)
            queued.push_back(create_task(
                [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, add, 1, 1); }, std::ref(p)));
        bool started = co_await test::eventually([&p] { return p.stats().busy == 1 && p.stats().queued == 3; });
        REQUIRE(started);
        p.shutdown(false, true);
        for (auto& q : queued) REQUIRE_THROWS_AS(co_await q, executor_closed);
        int v = co_await running; // the running call still completes
        CHECK(v == 100);
    }(pool));
}

TEST_CASE("process_pool: shutdown between runs of the loop it is bound to drains and returns",
          "[process_pool][shutdown]") {
    // The loop still exists but is not running: nothing would run a step
    // posted to it, so shutdown drives the workers from the calling thread.
    std::size_t fds = test::fd_count();
    {
        event_loop loop;
        process_pool pool({.workers = 2});
        auto first = loop.run_until_complete(
            [](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, add, 1, 2); }(pool));
        CHECK(first == 3);
        pool.shutdown(true, false);
        CHECK(pool.worker_pids().empty());
        auto after = loop.run_until_complete([](process_pool& p) -> task<bool> {
            try {
                co_await run_in_executor(p, add, 1, 1);
            } catch (const executor_closed&) {
                co_return true;
            }
            co_return false;
        }(pool));
        CHECK(after);
    }
    CHECK(test::fd_count() == fds);
}

TEST_CASE("process_pool: a pool outlives the loops that use it", "[process_pool]") {
    process_pool pool({.workers = 1});
    int a = run([](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, add, 1, 2); }(pool));
    int b = run([](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, add, 3, 4); }(pool));
    CHECK(a == 3);
    CHECK(b == 7);
}

TEST_CASE("process_pool: map returns results in input order for any chunk size", "[process_pool][map]") {
    process_pool pool({.workers = 2});
    std::vector<int> in(1000);
    for (int i = 0; i < 1000; ++i) in[static_cast<std::size_t>(i)] = i;
    for (std::size_t chunk : {1u, 64u, 1000u, 4096u}) {
        auto out = run([](process_pool& p, std::vector<int> in, std::size_t chunk) -> task<std::vector<int>> {
            co_return co_await offload::map(
                p, [](const int& x) { return x * x; }, in, chunk);
        }(pool, in, chunk));
        REQUIRE(out.size() == in.size());
        for (std::size_t i = 0; i < in.size(); ++i) CHECK(out[i] == in[i] * in[i]);
    }
}

TEST_CASE("process_pool: bad options are clear errors", "[process_pool]") {
    REQUIRE_THROWS_AS(process_pool({.workers = 100'000}), std::invalid_argument);
    REQUIRE_THROWS_AS(process_pool({.workers = 1, .task_timeout = std::chrono::nanoseconds(0)}), std::invalid_argument);
}
