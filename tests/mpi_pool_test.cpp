// tests/mpi_pool_test.cpp — mpi_pool's conformance with the process pool
// (typed results, exceptions that keep their type, gather, map order,
// cancellation before start, timeout and cancellation kills, a crash that
// fails one call, shutdown with cancel_pending, stats), run by CTest under
// `mpirun -np 3 --oversubscribe`: rank 0 runs Catch2, ranks 1 and 2 serve.
// One pool per MPI job, so every case shares it; the shutdown case is last.
#include <offload/mpi_pool.hpp>

#include <offload/event_loop.hpp>
#include <offload/future.hpp>
#include <offload/gather.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>
#include <offload/wait_for.hpp>

#include "pp_workers.hpp"

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
namespace pp = offload::test::pp;
using offload::test::eventually;
using offload::test::temp_dir;

namespace {

std::optional<mpi_pool> the_pool;
mpi_pool& pool() { return *the_pool; }

int add(int a, int b) { return a + b; }
std::string greet(std::string name) { return "hello, " + name; }
std::vector<int> doubled(std::vector<int> v) {
    for (int& x : v) x *= 2;
    return v;
}
struct point {
    int x = 0;
    double y = 0;
    std::string label;
    bool operator==(const point&) const = default;
};
point moved(point p) {
    p.x += 1;
    p.y *= 2;
    p.label += "!";
    return p;
}
void nothing() {}
int throws_invalid(int) { throw std::invalid_argument("bad argument"); }
int throws_range() { throw std::out_of_range("too far"); }
struct custom_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
int throws_custom() { throw custom_error("custom failure"); }
int square(int x) { return x * x; }
/// Blocks until `path` exists (bounded), then returns `v`.
int wait_for_file(std::string path, int v) {
    for (int i = 0; i < 20'000 && !std::filesystem::exists(path); ++i) ::usleep(1000);
    return v;
}

template <class T>
T on_loop(task<T> t) {
    return offload::run(std::move(t));
}

} // namespace

TEST_CASE("mpi_pool: the handshake found every worker rank and its local pool", "[mpi_pool]") {
    auto ranks = pool().ranks();
    REQUIRE(ranks.size() == 2);
    for (std::size_t i = 0; i < ranks.size(); ++i) {
        CHECK(ranks[i].rank == static_cast<int>(i) + 1);
        CHECK(!ranks[i].host.empty());
        CHECK(ranks[i].workers == 2);
        CHECK(ranks[i].max_in_flight == 2);
    }
    CHECK(pool().workers() == 4);
    CHECK(pool().stats().workers == 4);
}

TEST_CASE("mpi_pool: results come back with their types", "[mpi_pool]") {
    on_loop([]() -> task<> {
        int n = co_await run_in_executor(pool(), add, 2, 40);
        CHECK(n == 42);
        std::string s = co_await run_in_executor(pool(), greet, std::string("rank"));
        CHECK(s == "hello, rank");
        const std::vector<int> items{1, 2, 3}, twice{2, 4, 6}; // g++ 12: no braced list inside co_await
        std::vector<int> v = co_await run_in_executor(pool(), doubled, items);
        CHECK(v == twice);
        const point in{1, 1.5, std::string("p")}, want{2, 3.0, std::string("p!")};
        point p = co_await run_in_executor(pool(), moved, in);
        CHECK(p == want);
        co_await run_in_executor(pool(), nothing);
        auto inc = [](int x) { return x + 1; };
        int lam = co_await run_in_executor(pool(), inc, 6);
        CHECK(lam == 7);
        auto fut = submit(pool(), add, 1, 2);
        int f = co_await fut;
        CHECK(f == 3);
    }());
}

TEST_CASE("mpi_pool: exceptions keep their type across ranks", "[mpi_pool]") {
    on_loop([]() -> task<> {
        CHECK_THROWS_AS(co_await run_in_executor(pool(), throws_invalid, 1), std::invalid_argument);
        CHECK_THROWS_AS(co_await run_in_executor(pool(), throws_range), std::out_of_range);
        try {
            co_await run_in_executor(pool(), throws_custom);
            CHECK(false); // no exception
        } catch (const remote_error& e) {
            CHECK(e.type_name().find("custom_error") != std::string::npos);
            CHECK(std::string(e.what()) == "custom failure");
        }
    }());
}

TEST_CASE("mpi_pool: gather spreads calls over both ranks", "[mpi_pool]") {
    auto before = pool().rank_stats();
    on_loop([]() -> task<> {
        std::vector<task<int>> calls;
        for (int i = 0; i < 200; ++i)
            calls.push_back([](int i) -> task<int> { co_return co_await run_in_executor(pool(), square, i); }(i));
        auto r = co_await gather(std::move(calls));
        for (int i = 0; i < 200; ++i) CHECK(r[static_cast<std::size_t>(i)] == i * i);
    }());
    auto after = pool().rank_stats();
    REQUIRE(after.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) CHECK(after[i].completed > before[i].completed);
}

TEST_CASE("mpi_pool: map returns results in input order", "[mpi_pool]") {
    on_loop([]() -> task<> {
        std::vector<int> in(1000);
        for (int i = 0; i < 1000; ++i) in[static_cast<std::size_t>(i)] = i;
        auto out = co_await map(pool(), square, in, 37);
        REQUIRE(out.size() == 1000);
        for (int i = 0; i < 1000; ++i) CHECK(out[static_cast<std::size_t>(i)] == i * i);
    }());
}

TEST_CASE("mpi_pool: a call cancelled before it is sent never runs", "[mpi_pool]") {
    temp_dir dir;
    std::string go = (dir.path / "go").string(), ran = (dir.path / "ran").string();
    // The loop outlives the run, so the pool is still bound to it when the
    // waiting shutdown below is called between runs, on the loop's thread.
    event_loop loop;
    loop.run_until_complete([](std::string go, std::string ran) -> task<> {
        // 2 ranks x 2 in flight: four blockers fill every slot; the fifth waits on rank 0.
        std::vector<future<int>> blockers;
        for (int i = 0; i < 4; ++i) blockers.push_back(submit(pool(), wait_for_file, go, i));
        bool full = co_await eventually([] { return pool().stats().queued == 0 && pool().stats().busy == 4; });
        REQUIRE(full);
        auto queued = submit(pool(), pp::touch, ran);
        CHECK(pool().stats().queued == 1);
        queued.cancel();
        CHECK(queued.cancelled());
        CHECK(pool().stats().queued == 0);
        { std::ofstream(go) << "go\n"; }
        for (int i = 0; i < 4; ++i) {
            int v = co_await blockers[static_cast<std::size_t>(i)];
            CHECK(v == i);
        }
        co_await run_in_executor(pool(), nothing); // every slot has turned over since
    }(go, ran));
    CHECK(!std::filesystem::exists(ran));
}

TEST_CASE("mpi_pool: cancelling a running call kills its worker process on its rank", "[mpi_pool]") {
    auto kills = pool().stats().kills;
    on_loop([]() -> task<> {
        CHECK_THROWS_AS(co_await wait_for(run_in_executor(pool(), pp::sleep_ms, 60'000), 300ms), timeout_error);
        int n = co_await run_in_executor(pool(), add, 1, 1); // the rank healed
        CHECK(n == 2);
    }());
    CHECK(pool().stats().kills == kills + 1);
    CHECK(pool().stats().busy == 0);
}

TEST_CASE("mpi_pool: task_timeout kills the call on its rank", "[mpi_pool]") {
    auto kills = pool().stats().kills;
    on_loop([]() -> task<> {
        try {
            co_await run_in_executor(pool(), pp::sleep_ms, 60'000);
            CHECK(false); // no timeout
        } catch (const timeout_error& e) {
            CHECK(std::string(e.what()).find("MPI rank") != std::string::npos);
        }
    }());
    CHECK(pool().stats().kills == kills + 1);
}

TEST_CASE("mpi_pool: a crashed worker fails only its call, naming rank and host", "[mpi_pool]") {
    auto before = pool().stats();
    on_loop([]() -> task<> {
        try {
            co_await run_in_executor(pool(), pp::crash_abort);
            CHECK(false); // no crash
        } catch (const worker_crashed& e) {
            CHECK(e.signal() == SIGABRT);
            std::string what = e.what();
            CHECK(what.find("MPI rank") != std::string::npos);
            CHECK(what.find("host") != std::string::npos);
        }
        std::vector<task<int>> calls;
        for (int i = 0; i < 8; ++i)
            calls.push_back([](int i) -> task<int> { co_return co_await run_in_executor(pool(), add, i, 1); }(i));
        auto r = co_await gather(std::move(calls));
        for (int i = 0; i < 8; ++i) CHECK(r[static_cast<std::size_t>(i)] == i + 1);
    }());
    auto after = pool().stats();
    CHECK(after.crashes == before.crashes + 1);
    CHECK(after.failed == before.failed + 1);
}

TEST_CASE("mpi_pool: stats count per rank and in total", "[mpi_pool]") {
    auto s = pool().stats();
    auto per = pool().rank_stats();
    REQUIRE(per.size() == 2);
    CHECK(s.submitted >= per[0].submitted + per[1].submitted); // calls cancelled on rank 0 never reach a rank
    CHECK(s.completed == per[0].completed + per[1].completed);
    CHECK(s.bytes_sent == per[0].bytes_sent + per[1].bytes_sent);
    CHECK(s.bytes_received > 0);
    CHECK(s.submitted == s.completed + s.failed + s.cancelled);
    CHECK(s.run_time.p50.count() > 0);
}

// Last: the pool takes no calls after it (and the worker ranks exit).
TEST_CASE("mpi_pool: shutdown with cancel_pending drops queued calls and lets running ones finish", "[mpi_pool]") {
    temp_dir dir;
    std::string go = (dir.path / "go").string(), ran = (dir.path / "ran").string();
    // The loop outlives the run, so the pool is still bound to it when the
    // waiting shutdown below is called between runs, on the loop's thread.
    event_loop loop;
    loop.run_until_complete([](std::string go, std::string ran) -> task<> {
        std::vector<future<int>> blockers;
        for (int i = 0; i < 4; ++i) blockers.push_back(submit(pool(), wait_for_file, go, i));
        bool full = co_await eventually([] { return pool().stats().busy == 4; });
        REQUIRE(full);
        auto queued = submit(pool(), pp::touch, ran);
        pool().shutdown(false, true);
        CHECK_THROWS_AS(co_await queued, executor_closed);
        CHECK_THROWS_AS(co_await run_in_executor(pool(), add, 1, 2), executor_closed);
        { std::ofstream(go) << "go\n"; }
        for (int i = 0; i < 4; ++i) {
            int v = co_await blockers[static_cast<std::size_t>(i)];
            CHECK(v == i);
        }
    }(go, ran));
    pool().shutdown(true); // the worker ranks have exited
    CHECK(!std::filesystem::exists(ran));
    CHECK(pool().stats().busy == 0);
}

int main(int argc, char** argv) {
    mpi_pool::worker_main(argc, argv); // ranks 1..N-1 serve here and exit
    the_pool.emplace(mpi_pool_options{.local_workers = 2, .max_in_flight_per_rank = 2, .task_timeout = 3s});
    int rc = Catch::Session().run(argc, argv);
    the_pool.reset();
    return rc;
}
