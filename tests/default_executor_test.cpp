#include <offload/default_executor.hpp>

#include <offload/gather.hpp>
#include <offload/process_pool.hpp>
#include <offload/run.hpp>
#include <offload/thread_pool.hpp>
#include <offload/to_thread.hpp>
#include <offload/wait_for.hpp>

#include "proc_check.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

int my_pid() { return static_cast<int>(::getpid()); }
int square(int x) { return x * x; }
std::string shout(std::string s) { return s + "!"; }
int reject(int x) { throw std::invalid_argument("bad value " + std::to_string(x)); }
int spin_forever(int) {
    volatile unsigned long n = 0;
    for (;;) n = n + 1;
}
int with_token(std::stop_token, int x) { return x; }
int deref(const int* p) { return p ? *p : 0; }

// The logic_error message of awaiting `aw`, or "" if it did not throw one.
template <class Aw>
task<std::string> refusal_of(Aw aw) {
    try {
        co_await std::move(aw);
    } catch (const std::logic_error& e) {
        co_return e.what();
    }
    co_return "";
}

} // namespace

TEST_CASE("offload: runs on the default thread pool until set_default_executor chooses another", "[default_executor]") {
    thread_pool mine({.workers = 1, .max_queued = 0, .name = "mine"});
    run([](thread_pool& mine) -> task<> {
        auto& loop = event_loop::current();
        CHECK(loop.default_process_pool() == nullptr);
        int pid = co_await offload::offload(my_pid);
        CHECK(pid == ::getpid()); // a thread of this process
        CHECK(offload::default_thread_pool(loop).stats().completed == 1);
        loop.set_default_executor(mine);
        int x = co_await offload::offload([](int a) { return a * 2; }, 21);
        CHECK(x == 42);
        CHECK(mine.stats().completed == 1);
    }(mine));
}

TEST_CASE("offload: with a process pool as the default executor, calls run in its workers",
          "[default_executor][process_pool]") {
    test::without_leaks([] {
        process_pool procs({.workers = 2});
        thread_pool threads({.workers = 1, .max_queued = 0, .name = "threads"});
        run([](process_pool& procs, thread_pool& threads) -> task<> {
            auto& loop = event_loop::current();
            loop.set_default_executor(procs);
            CHECK(loop.default_process_pool() == &procs);

            // Typed values, in a worker process.
            int pid = co_await offload::offload(my_pid);
            CHECK(pid != ::getpid());
            int sq = co_await offload::offload(square, 12);
            CHECK(sq == 144);
            std::string word = "hey";
            std::string loud = co_await offload::offload(shout, word);
            CHECK(loud == "hey!");
            int lam = co_await offload::offload([](int a, int b) { return a - b; }, 50, 8);
            CHECK(lam == 42);

            // Exceptions come back with their type.
            bool invalid = false;
            try {
                co_await offload::offload(reject, 7);
            } catch (const std::invalid_argument& e) {
                invalid = std::string(e.what()) == "bad value 7";
            }
            CHECK(invalid);

            // gather of offload() calls runs them side by side in the pool.
            std::vector<task<int>> many;
            for (int i = 0; i < 20; ++i)
                many.push_back([](int i) -> task<int> { co_return co_await offload::offload(square, i); }(i));
            auto squares = co_await gather(std::move(many));
            for (int i = 0; i < 20; ++i) CHECK(squares[static_cast<std::size_t>(i)] == i * i);

            // A timeout kills the worker running the call, as run_in_executor does.
            auto pids_before = procs.worker_pids();
            bool timed_out = false;
            try {
                co_await wait_for(offload::offload(spin_forever, 0), 100ms);
            } catch (const timeout_error&) {
                timed_out = true;
            }
            CHECK(timed_out);
            CHECK(procs.stats().kills == 1);
            int after = co_await offload::offload(square, 3);
            CHECK(after == 9);
            CHECK(procs.worker_pids() != pids_before);
            CHECK(procs.stats().completed == 25);

            // Back to a thread pool: captures are fine again.
            loop.set_default_executor(threads);
            CHECK(loop.default_process_pool() == nullptr);
            int k = 5;
            int cap = co_await offload::offload([k] { return k + 1; });
            CHECK(cap == 6);
            CHECK(threads.stats().completed == 1);
        }(procs, threads));
    });
}

TEST_CASE("offload: a call that cannot cross the process boundary says why when the default is a process pool",
          "[default_executor][process_pool]") {
    test::without_leaks([] {
        process_pool procs({.workers = 1});
        run([](process_pool& procs) -> task<> {
            event_loop::current().set_default_executor(procs);
            int k = 5;
            std::string captured = co_await refusal_of(offload::offload([k] { return k; }));
            CHECK(captured.find("captureless lambda") != std::string::npos);
            CHECK(captured.find("to_thread") != std::string::npos);
            std::string token = co_await refusal_of(offload::offload(with_token, 1));
            CHECK(token.find("std::stop_token") != std::string::npos);
            int value = 3;
            std::string pointer = co_await refusal_of(offload::offload(deref, &value));
            CHECK(pointer.find("argument type is not serializable") != std::string::npos);
            // Nothing was sent; the pool still works.
            CHECK(procs.stats().submitted == 0);
            int ok = co_await offload::offload(square, 4);
            CHECK(ok == 16);
            // The same calls are fine on a thread.
            int t = co_await to_thread([k] { return k; });
            CHECK(t == 5);
        }(procs));
    });
}

TEST_CASE("offload: the default executor belongs to one loop", "[default_executor][process_pool]") {
    test::without_leaks([] {
        process_pool procs({.workers = 1});
        run([](process_pool& procs) -> task<> {
            event_loop::current().set_default_executor(procs);
            int pid = co_await offload::offload(my_pid);
            CHECK(pid != ::getpid());
        }(procs));
        // A new loop starts with its default thread pool again.
        std::thread other([] {
            int pid = run([]() -> task<int> { co_return co_await offload::offload(my_pid); }());
            CHECK(pid == ::getpid());
        });
        other.join();
    });
}

TEST_CASE("offload: uses the default executor, which set_default_executor changes", "[default_executor]") {
    thread_pool mine({.workers = 1, .max_queued = 0, .name = "mine"});
    run([](thread_pool& mine) -> task<> {
        int a = co_await offload::offload([] { return 1; });
        CHECK(a == 1);
        CHECK(offload::default_thread_pool().stats().completed == 1);
        event_loop::current().set_default_executor(mine);
        int b = co_await offload::offload([] { return 2; });
        CHECK(b == 2);
        CHECK(mine.stats().completed == 1);
        auto def = offload::default_thread_pool().stats();
        CHECK(def.workers == std::min<std::size_t>(32, available_cpus() + 4));
    }(mine));
}
