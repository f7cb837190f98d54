#include <offload/process_pool.hpp>

#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>
#include <offload/to_thread.hpp>

#include "pp_workers.hpp"
#include "proc_check.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::temp_dir;

namespace {

// --- what the workers run ------------------------------------------------------------

int add(int a, int b) { return a + b; }
int my_nice() { return ::getpriority(PRIO_PROCESS, 0); }
std::string greet(std::string name) { return "hello, " + name; }
std::vector<int> doubled(std::vector<int> v) {
    for (int& x : v) x *= 2;
    return v;
}
struct point {
    int x = 0;
    double y = 0;
    std::string label;
    std::vector<int> tags;
    bool operator==(const point&) const = default;
};
point moved(point p) {
    p.x += 1;
    p.y *= 2;
    p.label += "!";
    p.tags.push_back(p.x);
    return p;
}
void nothing(int) {}
int my_pid() { return static_cast<int>(::getpid()); }
int sleep_ms(int ms) {
    ::usleep(static_cast<useconds_t>(ms) * 1000);
    return ms;
}
int square(int x) { return x * x; }

int throw_invalid(int) { throw std::invalid_argument("bad argument 7"); }
int throw_range(int) { throw std::out_of_range("index 9 out of range"); }
int throw_runtime(int) { throw std::runtime_error("it went wrong"); }
struct my_custom_error : std::exception {
    const char* what() const noexcept override { return "custom trouble"; }
};
int throw_custom(int) { throw my_custom_error(); }

std::uint64_t fnv1a(const void* data, std::size_t n) {
    std::uint64_t h = 1469598103934665603ull;
    auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
std::pair<std::uint64_t, std::vector<std::uint8_t>> echo_bytes(std::vector<std::uint8_t> v) {
    return {fnv1a(v.data(), v.size()), std::move(v)};
}
std::pair<std::uint64_t, std::string> echo_string(std::string s) { return {fnv1a(s.data(), s.size()), std::move(s)}; }

// The initializer learns where to write from the environment (set before the pool exists).
void init_marker() {
    const char* dir = std::getenv("OFFLOAD_PP_INIT_DIR");
    if (!dir) return;
    std::ofstream(std::string(dir) + "/init-" + std::to_string(::getpid()), std::ios::app) << "init\n";
}

task<> conformance_round_trips(process_pool& pool) {
    int sum = co_await run_in_executor(pool, add, 2, 40);
    CHECK(sum == 42);
    std::string s = co_await run_in_executor(pool, greet, std::string("world"));
    CHECK(s == "hello, world");
    // (g++ 12 cannot keep an initializer_list's array alive across co_await: build arguments first)
    std::vector<int> in{1, 2, 3};
    std::vector<int> v = co_await run_in_executor(pool, doubled, in);
    CHECK(v == std::vector<int>{2, 4, 6});
    point arg{1, 1.5, "p", {7}};
    point p = co_await run_in_executor(pool, moved, arg);
    CHECK(p == point{2, 3.0, "p!", {7, 2}});
    int sq = co_await run_in_executor(
        pool, [](int x) { return x * x; }, 12);
    CHECK(sq == 144);
    int fp = co_await run_in_executor(pool, &square, 9);
    CHECK(fp == 81);
    co_await run_in_executor(pool, nothing, 1);
    int other = co_await run_in_executor(pool, my_pid);
    CHECK(other != static_cast<int>(::getpid()));
}

} // namespace

TEST_CASE("process_pool: values of every kind round-trip, with each start method", "[process_pool]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    test::without_leaks([how] {
        process_pool pool({.workers = 2, .start = how});
        run(conformance_round_trips(pool));
        auto st = pool.stats();
        CHECK(st.submitted == 8);
        CHECK(st.completed == 8);
        CHECK(st.failed == 0);
        CHECK(st.bytes_sent > 0);
        CHECK(st.bytes_received > 0);
    });
}

TEST_CASE("process_pool: map returns results in input order for every chunk size", "[process_pool][map]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    test::without_leaks([how] {
        process_pool pool({.workers = 3, .start = how});
        run([](process_pool& pool) -> task<> {
            std::vector<int> in(37);
            for (int i = 0; i < 37; ++i) in[static_cast<std::size_t>(i)] = i - 5;
            std::vector<int> want;
            for (int x : in) want.push_back(x * x);
            for (std::size_t chunk :
                 {std::size_t(1), std::size_t(2), std::size_t(5), std::size_t(36), std::size_t(37), std::size_t(100)}) {
                INFO("chunk " << chunk);
                auto by_ptr = co_await map(pool, &square, in, chunk);
                CHECK(by_ptr == want);
                auto by_lambda = co_await map(
                    pool, [](const int& x) { return x * x; }, in, chunk);
                CHECK(by_lambda == want);
            }
            auto empty = co_await map(pool, &square, std::vector<int>{}, 4);
            CHECK(empty.empty());
            REQUIRE_THROWS_AS(map(pool, &square, in, 0), std::invalid_argument);
        }(pool));
    });
}

TEST_CASE("process_pool: standard exceptions come back as themselves, others as remote_error",
          "[process_pool][errors]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    test::without_leaks([how] {
        process_pool pool({.workers = 2, .start = how});
        run([](process_pool& pool) -> task<> {
            std::string what;
            try {
                co_await run_in_executor(pool, throw_invalid, 1);
            } catch (const std::invalid_argument& e) {
                what = e.what();
            }
            CHECK(what == "bad argument 7");
            what.clear();
            try {
                co_await run_in_executor(pool, throw_range, 1);
            } catch (const std::out_of_range& e) {
                what = e.what();
            }
            CHECK(what == "index 9 out of range");
            what.clear();
            bool exact = false;
            try {
                co_await run_in_executor(pool, throw_runtime, 1);
            } catch (const std::runtime_error& e) {
                what = e.what();
                exact = typeid(e) == typeid(std::runtime_error);
            }
            CHECK(what == "it went wrong");
            CHECK(exact);
            std::string type;
            what.clear();
            try {
                co_await run_in_executor(pool, throw_custom, 1);
            } catch (const remote_error& e) {
                type = e.type_name();
                what = e.what();
            }
            CHECK(type.find("my_custom_error") != std::string::npos);
            CHECK(what.find("custom trouble") != std::string::npos);
            // The worker survived all of that.
            int v = co_await run_in_executor(pool, add, 1, 1);
            CHECK(v == 2);
        }(pool));
        CHECK(pool.stats().failed == 4);
        CHECK(pool.stats().crashes == 0);
    });
}

TEST_CASE("process_pool: payloads from 0 bytes to 64 MiB round-trip intact", "[process_pool][payload]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    test::without_leaks([how] {
        process_pool pool({.workers = 1, .start = how});
        run([](process_pool& pool) -> task<> {
            std::mt19937_64 rng(42);
            for (std::size_t n :
                 {std::size_t(0), std::size_t(1), std::size_t(4095), std::size_t(1) << 20, std::size_t(64) << 20}) {
                INFO("size " << n);
                std::vector<std::uint8_t> bytes(n);
                for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
                const std::uint64_t want = fnv1a(bytes.data(), bytes.size());
                auto [seen, back] = co_await run_in_executor(pool, echo_bytes, bytes);
                CHECK(seen == want);
                CHECK(back.size() == n);
                CHECK(fnv1a(back.data(), back.size()) == want);

                std::string text(bytes.begin(), bytes.end());
                auto [seen_s, back_s] = co_await run_in_executor(pool, echo_string, text);
                CHECK(seen_s == want);
                CHECK(back_s.size() == n);
                CHECK(fnv1a(back_s.data(), back_s.size()) == want);
            }
        }(pool));
    });
}

TEST_CASE("process_pool: max_tasks_per_child replaces the worker after that many calls", "[process_pool]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    test::without_leaks([how] {
        process_pool pool({.workers = 1, .start = how, .max_tasks_per_child = 2});
        std::vector<int> pids = run([](process_pool& pool) -> task<std::vector<int>> {
            std::vector<int> out;
            for (int i = 0; i < 6; ++i) {
                int pid = co_await run_in_executor(pool, my_pid);
                out.push_back(pid);
            }
            co_return out;
        }(pool));
        REQUIRE(pids.size() == 6);
        CHECK(std::set<int>(pids.begin(), pids.end()).size() == 3);
        CHECK(pids[0] == pids[1]);
        CHECK(pids[2] == pids[3]);
        CHECK(pids[4] == pids[5]);
        CHECK(pids[1] != pids[2]);
        CHECK(pids[3] != pids[4]);
        CHECK(pool.stats().crashes == 0);
    });
}

TEST_CASE("process_pool: the initializer runs once in every worker, respawns included", "[process_pool]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    temp_dir dir;
    ::setenv("OFFLOAD_PP_INIT_DIR", dir.path.c_str(), 1);
    std::vector<int> pids;
    test::without_leaks([&] {
        process_pool pool({.workers = 2, .start = how, .max_tasks_per_child = 2, .initializer = init_marker});
        pids = run([](process_pool& pool) -> task<std::vector<int>> {
            std::vector<int> out;
            for (int i = 0; i < 8; ++i) {
                int pid = co_await run_in_executor(pool, my_pid);
                out.push_back(pid);
            }
            co_return out;
        }(pool));
    });
    ::unsetenv("OFFLOAD_PP_INIT_DIR");
    std::set<int> seen(pids.begin(), pids.end());
    CHECK(seen.size() >= 4); // 8 sequential calls, 2 per child
    auto lines_of = [](const std::filesystem::path& p) {
        std::ifstream f(p);
        std::string line;
        int lines = 0;
        while (std::getline(f, line)) ++lines;
        return lines;
    };
    std::size_t files = 0;
    for (auto& e : std::filesystem::directory_iterator(dir.path)) {
        ++files;
        INFO(e.path().filename().string());
        // Never twice. (A replacement still in its initializer when the pool is
        // destroyed is killed there, so its file may be empty.)
        CHECK(lines_of(e.path()) <= 1);
    }
    for (int pid : seen) { // every worker that ran a call ran the initializer first, once
        INFO("pid " << pid);
        CHECK(lines_of(dir.path / ("init-" + std::to_string(pid))) == 1);
    }
    CHECK(files >= seen.size());
}

TEST_CASE("process_pool: nice raises every worker's niceness, with each start method", "[process_pool][nice]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    const int base = ::getpriority(PRIO_PROCESS, 0);
    const int want = std::min(19, base + 5);
    std::vector<int> seen;
    test::without_leaks([&] {
        // max_tasks_per_child = 1: respawned workers are niced too.
        process_pool pool({.workers = 2, .start = how, .max_tasks_per_child = 1, .nice = 5});
        seen = run([](process_pool& pool) -> task<std::vector<int>> {
            std::vector<int> out;
            for (int i = 0; i < 4; ++i) out.push_back(co_await run_in_executor(pool, my_nice));
            co_return out;
        }(pool));
    });
    REQUIRE(seen.size() == 4);
    for (int n : seen) CHECK(n == want);
    CHECK(::getpriority(PRIO_PROCESS, 0) == base); // the parent is left alone
}

TEST_CASE("process_pool: a nice out of 0..19 is a clear error", "[process_pool][nice]") {
    for (int bad : {-1, 20}) {
        INFO("nice = " << bad);
        try {
            process_pool pool({.workers = 1, .nice = bad});
            FAIL("no exception");
        } catch (const std::invalid_argument& e) {
            CHECK_THAT(e.what(), Catch::Contains("process_pool_options.nice") && Catch::Contains("19"));
        }
    }
}

TEST_CASE("process_pool: shutdown from another thread lets running calls finish, then refuses calls",
          "[process_pool][shutdown]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    test::without_leaks([how] {
        process_pool pool({.workers = 2, .start = how});
        run([](process_pool& pool) -> task<> {
            auto a =
                create_task([](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, sleep_ms, 300); },
                            std::ref(pool));
            auto b =
                create_task([](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, sleep_ms, 200); },
                            std::ref(pool));
            co_await sleep(50ms);
            co_await to_thread([&pool] { pool.shutdown(true, false); });
            CHECK(a.done());
            CHECK(b.done());
            int ra = co_await a;
            int rb = co_await b;
            CHECK(ra == 300);
            CHECK(rb == 200);
            REQUIRE_THROWS_AS(co_await run_in_executor(pool, add, 1, 2), executor_closed);
            CHECK(pool.worker_pids().empty());
        }(pool));
    });
}

TEST_CASE("process_pool: shutdown from another thread while the first call binds the pool to its loop",
          "[process_pool][shutdown]") {
    // shutdown() decides under the pool's mutex whether a loop owns the pool
    // (then the loop shuts it down) or not (then the calling thread does): the
    // first call, which binds the pool, must decide under the same mutex. It
    // did not (a data race that TSan reports; and a shutdown that saw no loop
    // ran on its thread while the loop took the pool). The thread sleeps
    // instead of synchronizing, so nothing but that mutex orders the two.
    auto how = GENERATE(start_method::fork, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    test::without_leaks([how] {
        process_pool pool({.workers = 1, .start = how});
        std::thread other([&pool] {
            std::this_thread::sleep_for(20ms);
            pool.shutdown(false, false);
        });
        int r = run([](process_pool& pool) -> task<int> {
            try {
                co_return co_await run_in_executor(pool, sleep_ms, 100); // binds the pool, unless it is closed
            } catch (const executor_closed&) {
                co_return -1;
            }
        }(pool));
        other.join();
        CHECK((r == 100 || r == -1));
        REQUIRE_THROWS_AS(
            run([](process_pool& pool) -> task<int> { co_return co_await run_in_executor(pool, add, 1, 2); }(pool)),
            executor_closed);
    });
}

TEST_CASE("process_pool: shutdown(false, true) resolves queued calls with executor_closed",
          "[process_pool][shutdown]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    test::without_leaks([how] {
        process_pool pool({.workers = 1, .start = how});
        run([](process_pool& pool) -> task<> {
            auto running =
                create_task([](process_pool& p) -> task<int> { co_return co_await run_in_executor(p, sleep_ms, 300); },
                            std::ref(pool));
            // Until the worker runs it (a spawned worker under TSan takes a while to start).
            bool started = co_await test::eventually([&pool] { return pool.stats().busy == 1; });
            REQUIRE(started);
            std::vector<task_handle<int>> queued;
            for (int i = 0; i < 3; ++i)
                queued.push_back(create_task(
                    [](process_pool& p, int i) -> task<int> { co_return co_await run_in_executor(p, add, i, i); },
                    std::ref(pool), i));
            // Until the three are queued (a busy machine may take a while to run the tasks).
            for (int i = 0; i < 2000 && pool.stats().queued < 3; ++i) co_await sleep(1ms);
            CHECK(pool.stats().queued == 3);
            pool.shutdown(false, true);
            for (auto& q : queued) REQUIRE_THROWS_AS(co_await q, executor_closed);
            int r = co_await running; // the running call still completes
            CHECK(r == 300);
            REQUIRE_THROWS_AS(co_await run_in_executor(pool, add, 1, 2), executor_closed);
        }(pool));
    });
}

TEST_CASE("process_pool: a pool outlives two successive event loops", "[process_pool]") {
    auto how = GENERATE(start_method::fork, start_method::spawn, start_method::forkserver);
    INFO("start method: " << offload::to_string(how));
    test::without_leaks([how] {
        process_pool pool({.workers = 2, .start = how});
        for (int round = 0; round < 2; ++round) {
            INFO("loop " << round);
            int v = run([](process_pool& pool, int round) -> task<int> {
                int a = co_await run_in_executor(pool, add, round, 10);
                std::vector<int> in{1, 2, 3};
                auto m = co_await map(pool, &square, in, 2);
                co_return a + m[2];
            }(pool, round));
            CHECK(v == round + 10 + 9);
        }
        CHECK(pool.stats().completed == 6);
    });
}

namespace {

// Bytes of memory the pool's mailboxes (memfds named offload-call/-result)
// hold now, seen from outside through /proc/self/fd.
std::size_t mailbox_resident_bytes() {
    std::size_t total = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        auto target = std::filesystem::read_symlink(e.path(), ec).string();
        if (ec || target.rfind("/memfd:offload-", 0) != 0) continue;
        struct stat st {};
        if (::stat(e.path().c_str(), &st) == 0) total += static_cast<std::size_t>(st.st_blocks) * 512;
    }
    return total;
}

} // namespace

TEST_CASE("process_pool: big mailbox pages stay while big calls continue and go back after a second",
          "[process_pool][payload]") {
    test::without_leaks([] {
        process_pool pool({.workers = 1, .shared_memory_threshold = std::size_t(1) << 20});
        run([](process_pool& pool) -> task<> {
            const std::size_t big = std::size_t(16) << 20;
            std::vector<std::uint8_t> bytes(big, 7);
            const std::uint64_t want = fnv1a(bytes.data(), bytes.size());
            auto r1 = co_await run_in_executor(pool, echo_bytes, bytes);
            CHECK(r1.first == want);
            // Both directions carried 16 MiB and keep it for the next big call.
            CHECK(mailbox_resident_bytes() >= 2 * big);
            // Small calls alone do not give the pages back before the hold is over...
            int s = co_await run_in_executor(pool, add, 1, 2);
            CHECK(s == 3);
            CHECK(mailbox_resident_bytes() >= 2 * big);
            // ...and a second big call reuses them (and stays intact).
            bytes.assign(big, 9);
            auto r2 = co_await run_in_executor(pool, echo_bytes, bytes);
            CHECK(r2.first == fnv1a(bytes.data(), bytes.size()));
            CHECK(r2.second == bytes);
            // Idle past the hold: the pages above the threshold go back.
            co_await sleep(1500ms);
            CHECK(mailbox_resident_bytes() <= 2 * ((std::size_t(1) << 20) + 8192));
            // The pool works as before, small and big.
            auto r3 = co_await run_in_executor(pool, echo_bytes, bytes);
            CHECK(r3.second == bytes);
            CHECK(mailbox_resident_bytes() >= 2 * big);
            // A worker kept busy with small calls gives them back once the hold is over too.
            auto until = std::chrono::steady_clock::now() + 1200ms;
            int calls = 0, wrong = 0;
            while (std::chrono::steady_clock::now() < until) {
                int t = co_await run_in_executor(pool, add, calls, 1);
                wrong += t != calls + 1;
                ++calls;
            }
            CHECK(wrong == 0);
            CHECK(mailbox_resident_bytes() <= 2 * ((std::size_t(1) << 20) + 8192));
        }(pool));
    });
}

// --- submit: the eager twin of run_in_executor ----------------------------------------

TEST_CASE("process_pool: submit starts the call before it returns; the worker runs it while the task goes on",
          "[process_pool][submit]") {
    temp_dir dir;
    test::without_leaks([&] {
        process_pool pool({.workers = 1, .start = start_method::fork});
        run([](process_pool& pool, std::filesystem::path pid_file) -> task<> {
            auto f = submit(pool, test::pp::pid_to_file_then_sleep, pid_file.string(), 50);
            CHECK(pool.stats().submitted == 1); // handed over inside submit, not at the await
            // The worker runs the call (and writes its pid) before the task awaits.
            int pid = co_await test::pid_from_file(pid_file);
            CHECK(pid > 0);
            CHECK(pid != static_cast<int>(::getpid()));
            int v = co_await f;
            CHECK(v == 50);
            auto sum = submit(pool, add, 2, 40);
            auto bad = submit(pool, throw_invalid, 7);
            auto custom = submit(pool, throw_custom, 1);
            auto none = submit(pool, nothing, 1);
            int s = co_await sum;
            CHECK(s == 42);
            REQUIRE_THROWS_AS(co_await bad, std::invalid_argument);
            REQUIRE_THROWS_AS(co_await custom, remote_error);
            co_await none;
            CHECK(none.done());
        }(pool, dir.path / "pid"));
    });
}

TEST_CASE("process_pool: submit's cancel drops a queued call (it never runs) and kills a running one",
          "[process_pool][submit][cancel]") {
    temp_dir dir;
    test::without_leaks([&] {
        process_pool pool({.workers = 1, .start = start_method::fork});
        run([](process_pool& pool, std::filesystem::path side_effect) -> task<> {
            int first = co_await run_in_executor(pool, my_pid);
            auto spinning = submit(pool, test::pp::spin_forever);
            bool busy = co_await test::eventually([&pool] { return pool.stats().busy == 1; });
            REQUIRE(busy);
            auto queued = submit(pool, test::pp::touch, side_effect.string());
            CHECK(pool.stats().queued == 1);
            CHECK(queued.cancel());
            REQUIRE_THROWS_AS(co_await queued, cancelled_error);
            CHECK(pool.stats().queued == 0);
            CHECK(spinning.cancel()); // the future is cancelled now; the worker is killed and replaced
            CHECK(spinning.cancelled());
            REQUIRE_THROWS_AS(co_await spinning, cancelled_error);
            bool gone = co_await test::eventually([first] { return test::process_gone(first); });
            CHECK(gone);
            int second = co_await run_in_executor(pool, my_pid);
            CHECK(second != first);
            CHECK_FALSE(std::filesystem::exists(side_effect));
            auto st = pool.stats();
            CHECK(st.cancelled == 2);
            CHECK(st.kills == 1);
        }(pool, dir.path / "ran"));
    });
}

TEST_CASE("process_pool: a worker crash fails the submitted future with worker_crashed, awaited or not",
          "[process_pool][submit][crash]") {
    test::without_leaks([] {
        process_pool pool({.workers = 1, .start = start_method::fork});
        event_loop loop;
        std::vector<exception_context> seen;
        loop.set_exception_handler([&seen](const exception_context& c) { seen.push_back(c); });
        loop.run_until_complete([](process_pool& pool, std::vector<exception_context>& seen) -> task<> {
            auto crash = submit(pool, test::pp::crash_abort);
            REQUIRE_THROWS_AS(co_await crash, worker_crashed);
            CHECK(crash.done());
            submit(pool, test::pp::crash_exit3); // fire-and-forget: the crash reaches the handler, once
            bool reported = co_await test::eventually([&seen] { return !seen.empty(); });
            REQUIRE(reported);
            int s = co_await submit(pool, add, 1, 2); // the pool healed
            CHECK(s == 3);
        }(pool, seen));
        REQUIRE(seen.size() == 1u);
        int status = -1;
        try {
            std::rethrow_exception(seen[0].exception);
        } catch (const worker_crashed& e) {
            status = e.exit_status();
        } catch (...) {
        }
        CHECK(status == 3);
    });
}

TEST_CASE("process_pool: shutdown(false, true) fails submitted queued calls with executor_closed; then submit throws",
          "[process_pool][submit][shutdown]") {
    test::without_leaks([] {
        process_pool pool({.workers = 1, .start = start_method::fork});
        run([](process_pool& pool) -> task<> {
            auto running = submit(pool, sleep_ms, 300);
            bool busy = co_await test::eventually([&pool] { return pool.stats().busy == 1; });
            REQUIRE(busy);
            std::vector<future<int>> queued;
            for (int i = 0; i < 3; ++i) queued.push_back(submit(pool, add, i, i));
            pool.shutdown(false, true);
            for (auto& q : queued) REQUIRE_THROWS_AS(co_await q, executor_closed);
            int r = co_await running; // the running call still completes
            CHECK(r == 300);
            REQUIRE_THROWS_AS(submit(pool, add, 1, 2), executor_closed);
        }(pool));
    });
}

TEST_CASE("process_pool: a loop torn down while a submitted call runs cancels the future and kills the worker",
          "[process_pool][submit][teardown]") {
    test::without_leaks([] {
        process_pool pool({.workers = 1, .start = start_method::fork});
        int first = -1;
        future<int> kept = [&] {
            event_loop loop;
            return loop.run_until_complete([](process_pool& pool, int& first) -> task<future<int>> {
                first = co_await run_in_executor(pool, my_pid);
                auto f = submit(pool, test::pp::spin_forever);
                bool busy = co_await test::eventually([&pool] { return pool.stats().busy == 1; });
                REQUIRE(busy);
                co_return f; // the loop goes away with the call still running
            }(pool, first));
        }();
        CHECK(kept.done());
        CHECK(kept.cancelled());
        CHECK(test::wait_until([first] { return test::process_gone(first); }));
        // The pool serves the next loop.
        int s = run([](process_pool& pool) -> task<int> { co_return co_await submit(pool, add, 20, 22); }(pool));
        CHECK(s == 42);
    });
}

TEST_CASE("process_pool: a forkserver pool stops while a younger pool is alive", "[process_pool][forkserver]") {
    // The younger pool's forkserver (or fork-method workers) was forked with a
    // copy of the older pool's forkserver socket, so the older server never saw
    // EOF when its pool closed its end, and the older pool's destructor hung.
    auto younger_start = GENERATE(start_method::fork, start_method::forkserver);
    INFO("younger pool: " << offload::to_string(younger_start));
    test::without_leaks([younger_start] {
        auto older =
            std::make_unique<process_pool>(process_pool_options{.workers = 1, .start = start_method::forkserver});
        auto younger = std::make_unique<process_pool>(process_pool_options{.workers = 1, .start = younger_start});
        run([](process_pool& a, process_pool& b) -> task<> {
            int pa = co_await run_in_executor(a, my_pid);
            int pb = co_await run_in_executor(b, my_pid);
            CHECK(pa != pb);
        }(*older, *younger));
        std::promise<void> stopped;
        auto done = stopped.get_future();
        std::thread destroy([&] {
            older.reset();
            stopped.set_value();
        });
        bool in_time = done.wait_for(30s) == std::future_status::ready;
        CHECK(in_time);
        younger.reset(); // also ends a hung destructor: its copy of the socket closes
        destroy.join();
    });
}
