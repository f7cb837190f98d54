#include <offload/thread_pool.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/to_thread.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fstream>
#include <set>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {
std::set<std::string> thread_names() {
    std::set<std::string> names;
    DIR* d = ::opendir("/proc/self/task");
    if (!d) return names;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/comm");
        std::string n;
        std::getline(f, n);
        names.insert(n);
    }
    ::closedir(d);
    return names;
}

double process_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
} // namespace

TEST_CASE("thread_pool: workers are named after the pool", "[thread_pool]") {
    thread_pool pool({.workers = 3, .max_queued = 0, .name = "crunch"});
    auto names = thread_names();
    CHECK(names.count("crunch-0") == 1);
    CHECK(names.count("crunch-2") == 1);
    CHECK(pool.workers() == 3);
    CHECK(pool.stats().workers == 3);
}

TEST_CASE("thread_pool: zero workers means available_cpus()", "[thread_pool]") {
    thread_pool pool({.workers = 0, .max_queued = 0, .name = "auto"});
    CHECK(pool.workers() == available_cpus());
}

TEST_CASE("thread_pool: an absurd worker count is a clear error", "[thread_pool]") {
    REQUIRE_THROWS_AS(thread_pool({.workers = 1'000'000, .max_queued = 0, .name = "x"}), std::invalid_argument);
}

namespace {
// The niceness of the calling thread (Linux keeps one per thread).
int thread_nice() { return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid())); }
} // namespace

TEST_CASE("thread_pool: nice raises every worker's niceness by that much", "[thread_pool][nice]") {
    const int base = thread_nice();
    const int want = std::min(19, base + 7);
    thread_pool pool({.workers = 2, .max_queued = 0, .name = "nice", .nice = 7});
    std::vector<int> seen = run([](thread_pool& p) -> task<std::vector<int>> {
        std::vector<int> out;
        for (int i = 0; i < 8; ++i) out.push_back(co_await run_in_executor(p, [] { return thread_nice(); }));
        co_return out;
    }(pool));
    for (int n : seen) CHECK(n == want);
    CHECK(thread_nice() == base); // the loop's thread is left alone
}

TEST_CASE("thread_pool: nice 0 leaves workers at the creator's niceness", "[thread_pool][nice]") {
    const int base = thread_nice();
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "plain"});
    int seen = run(
        [](thread_pool& p) -> task<int> { co_return co_await run_in_executor(p, [] { return thread_nice(); }); }(pool));
    CHECK(seen == base);
}

TEST_CASE("thread_pool: a nice out of 0..19 is a clear error", "[thread_pool][nice]") {
    for (int bad : {-1, -20, 20, 1000}) {
        INFO("nice = " << bad);
        try {
            thread_pool pool({.workers = 1, .max_queued = 0, .name = "x", .nice = bad});
            FAIL("no exception");
        } catch (const std::invalid_argument& e) {
            CHECK_THAT(e.what(),
                       Catch::Contains("thread_pool_options.nice") && Catch::Contains("0") && Catch::Contains("19"));
        }
    }
    CHECK_NOTHROW(thread_pool({.workers = 1, .max_queued = 0, .name = "x", .nice = 19}));
}

TEST_CASE("thread_pool: an idle pool does not burn CPU after its spin budget", "[thread_pool][idle]") {
    thread_pool pool({.workers = 2, .max_queued = 0, .name = "idle"});
    run([](thread_pool& p) -> task<> { co_await run_in_executor(p, [] {}); }(pool));
    std::this_thread::sleep_for(20ms); // past the spin budget
    double c0 = process_cpu_seconds();
    std::this_thread::sleep_for(300ms);
    double used = process_cpu_seconds() - c0;
    // Parked workers use nothing; allow plenty for a noisy, instrumented build.
    CHECK(used < 0.03);
}

TEST_CASE("thread_pool: the destructor runs what is queued, then joins", "[thread_pool][shutdown]") {
    std::atomic<int> ran{0};
    {
        thread_pool pool({.workers = 1, .max_queued = 0, .name = "dtor"});
        run([](thread_pool& p, std::atomic<int>& ran) -> task<> {
            for (int i = 0; i < 10; ++i) co_await run_in_executor(p, [&ran] { ran.fetch_add(1); });
        }(pool, ran));
    }
    CHECK(ran.load() == 10);
}

TEST_CASE("thread_pool: shutdown(wait) from one of its own workers is refused", "[thread_pool][shutdown]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "self"});
    bool refused = run([](thread_pool& p) -> task<bool> {
        co_return co_await run_in_executor(p, [&p] {
            try {
                p.shutdown(true, false);
            } catch (const std::logic_error&) {
                return true;
            }
            return false;
        });
    }(pool));
    CHECK(refused);
}

TEST_CASE("thread_pool: shutdown is idempotent and later submissions fail with executor_closed",
          "[thread_pool][shutdown]") {
    thread_pool pool({.workers = 2, .max_queued = 0, .name = "twice"});
    pool.shutdown();
    pool.shutdown(true, true);
    run([](thread_pool& p) -> task<> {
        bool closed = false;
        try {
            co_await run_in_executor(p, [] { return 1; });
        } catch (const executor_closed& e) {
            closed = std::string(e.what()).find("twice") != std::string::npos;
        }
        CHECK(closed);
    }(pool));
}

TEST_CASE("thread_pool: queue-wait and run-time percentiles are measured", "[thread_pool][stats]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "pct"});
    run([](thread_pool& p) -> task<> {
        for (int i = 0; i < 20; ++i) co_await run_in_executor(p, [] { std::this_thread::sleep_for(2ms); });
    }(pool));
    auto s = pool.stats();
    CHECK(s.completed == 20);
    CHECK(s.run_time.p50 >= 2ms);
    CHECK(s.run_time.max >= s.run_time.p99);
    CHECK(s.run_time.p99 >= s.run_time.p50);
    CHECK(s.queue_wait.max < 1s);
}

TEST_CASE("thread_pool: a loop destroyed with a call still running leaves nothing behind", "[thread_pool][teardown]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "tear"});
    std::atomic<bool> release{false};
    {
        event_loop loop;
        auto outer = [](thread_pool& p, std::atomic<bool>& r) -> task<> {
            create_task(
                [](thread_pool& p, std::atomic<bool>& r) -> task<> {
                    co_await run_in_executor(p, [&r] {
                        while (!r.load()) std::this_thread::sleep_for(100us);
                    });
                },
                std::ref(p), std::ref(r));
            co_await sleep(5ms);
        };
        loop.run_until_complete(outer(pool, release));
        // The loop (and the pending task's frame) goes away while the call runs.
    }
    release = true;
    pool.shutdown();
    auto s = pool.stats();
    CHECK(s.busy == 0);
    CHECK(s.cancelled == 1);
}
