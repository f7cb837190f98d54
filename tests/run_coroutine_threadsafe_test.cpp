// Tests of run_coroutine_threadsafe: a task scheduled from other threads runs
// on the loop's thread and settles the std::future with its value or
// exception; a loop that is destroyed before (or while) running it settles it
// with executor_closed, run()'s leftover cancellation with cancelled_error.
#include <offload/run_coroutine_threadsafe.hpp>

#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>

#include <counted.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::counted;

namespace {

struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

task<int> times_two_on(int x, std::thread::id* where) {
    co_await sleep(1ms);
    if (where) *where = std::this_thread::get_id();
    co_return x * 2;
}

task<int> fails_after_yield(std::string what) {
    co_await sleep(0ms);
    throw my_error(what);
}

task<> sets(std::atomic<int>& n) {
    co_await sleep(0ms);
    n.fetch_add(1);
}

// Keeps the loop serving until `done` is set (bounded, so a bug fails instead of hanging).
task<bool> serve_until(const std::atomic<bool>& done, std::chrono::milliseconds limit = 20s) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!done.load()) {
        if (std::chrono::steady_clock::now() > until) co_return false;
        co_await sleep(1ms);
    }
    co_return true;
}

} // namespace

TEST_CASE("run_coroutine_threadsafe: a task scheduled from a std::thread runs on the loop and gives its value",
          "[run_coroutine_threadsafe]") {
    event_loop loop;
    std::atomic<bool> done{false};
    std::thread::id ran_on;
    int got = 0;
    std::thread other([&] {
        std::future<int> f = run_coroutine_threadsafe(loop, times_two_on(21, &ran_on));
        got = f.get();
        done = true;
    });
    bool served = loop.run_until_complete(serve_until(done));
    other.join();
    REQUIRE(served);
    CHECK(got == 42);
    CHECK(ran_on == std::this_thread::get_id());
}

TEST_CASE("run_coroutine_threadsafe: the task's exception reaches std::future::get with its type",
          "[run_coroutine_threadsafe]") {
    event_loop loop;
    std::atomic<bool> done{false};
    std::string what;
    std::atomic<int> voids{0};
    std::thread other([&] {
        auto f = run_coroutine_threadsafe(loop, fails_after_yield("from the loop"));
        try {
            f.get();
        } catch (const my_error& e) {
            what = e.what();
        }
        run_coroutine_threadsafe(loop, sets(voids)).get(); // task<void>
        done = true;
    });
    bool served = loop.run_until_complete(serve_until(done));
    other.join();
    REQUIRE(served);
    CHECK(what == "from the loop");
    CHECK(voids.load() == 1);
}

TEST_CASE("run_coroutine_threadsafe: many threads at once each get their own result", "[run_coroutine_threadsafe]") {
    event_loop loop;
    constexpr int threads = 4, calls = 50;
    std::atomic<int> finished{0};
    std::atomic<bool> done{false};
    std::atomic<int> wrong{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            std::vector<std::future<int>> fs;
            for (int i = 0; i < calls; ++i)
                fs.push_back(run_coroutine_threadsafe(loop, times_two_on(t * 1000 + i, nullptr)));
            for (int i = 0; i < calls; ++i)
                if (fs[static_cast<std::size_t>(i)].get() != 2 * (t * 1000 + i)) wrong.fetch_add(1);
            if (finished.fetch_add(1) + 1 == threads) done = true;
        });
    bool served = loop.run_until_complete(serve_until(done));
    for (auto& th : pool) th.join();
    REQUIRE(served);
    CHECK(wrong.load() == 0);
}

TEST_CASE("run_coroutine_threadsafe: a loop destroyed before running the task settles the future with "
          "executor_closed",
          "[run_coroutine_threadsafe][teardown]") {
    counted::reset();
    std::future<void> f;
    {
        event_loop loop;
        std::thread other([&] { f = run_coroutine_threadsafe(loop, [](counted) -> task<> { co_return; }(counted{})); });
        other.join();
        CHECK(counted::live() == 1); // the unstarted frame waits in the loop's queue
    }
    REQUIRE(f.valid());
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    REQUIRE_THROWS_AS(f.get(), executor_closed);
    CHECK(counted::live() == 0);
}

TEST_CASE("run_coroutine_threadsafe: a loop destroyed while the task is suspended settles the future with "
          "executor_closed",
          "[run_coroutine_threadsafe][teardown]") {
    counted::reset();
    std::future<int> f;
    {
        event_loop loop;
        f = run_coroutine_threadsafe(loop, [](counted) -> task<int> {
            co_await sleep(24h);
            co_return 1;
        }(counted{}));
        loop.run_until_complete([]() -> task<> {
            for (int i = 0; i < 3; ++i) co_await sleep(0ms); // the task starts and suspends
        }());
        CHECK(counted::live() == 1);
        CHECK(f.wait_for(0s) == std::future_status::timeout);
    }
    REQUIRE_THROWS_AS(f.get(), executor_closed);
    CHECK(counted::live() == 0);
}

TEST_CASE("run_coroutine_threadsafe: run() cancels a leftover task; the future gives cancelled_error",
          "[run_coroutine_threadsafe][cancel]") {
    std::future<int> f;
    run([](std::future<int>& f) -> task<> {
        f = run_coroutine_threadsafe(event_loop::current(), [](int) -> task<int> {
            co_await sleep(24h);
            co_return 1;
        }(0));
        for (int i = 0; i < 3; ++i) co_await sleep(0ms);
    }(f));
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    REQUIRE_THROWS_AS(f.get(), cancelled_error);
}

TEST_CASE("run_coroutine_threadsafe: an empty task is a std::logic_error", "[run_coroutine_threadsafe][misuse]") {
    event_loop loop;
    task<int> empty;
    REQUIRE_THROWS_AS(run_coroutine_threadsafe(loop, std::move(empty)), std::logic_error);
}
