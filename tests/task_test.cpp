// Tests of task<T>: laziness, results, exceptions, deep chains (symmetric
// transfer), frame lifetimes, and misuse (double await, moved-from task).
#include <offload/task.hpp>

#include <offload/event_loop.hpp>

#include <counted.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <utility>

using namespace offload;
using offload::test::counted;

namespace {

struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct my_derived_error : my_error {
    using my_error::my_error;
};

task<> set_flag(bool& flag) {
    flag = true;
    co_return;
}

task<int> answer() { co_return 42; }

task<> nothing(int& calls) {
    ++calls;
    co_return;
}

task<int> throws_derived() {
    throw my_derived_error("derived failure");
    co_return 0;
}

task<std::unique_ptr<int>> make_unique_int(int v) { co_return std::make_unique<int>(v); }

task<int> depth(int n) {
    if (n == 0) co_return 0;
    int below = co_await depth(n - 1);
    co_return below + 1;
}

task<int> frame_with_counted(counted /*param*/, bool& ran) {
    counted local;
    ran = true;
    co_return 7;
}

task<int> frame_with_counted_throws(counted /*param*/, bool& ran) {
    counted local;
    ran = true;
    throw my_error("frame failure");
    co_return 0;
}

// Runs `t` on a fresh loop (the loop's own machinery is tested elsewhere).
template <class T>
T drive(task<T> t) {
    event_loop loop;
    return loop.run_until_complete(std::move(t));
}

} // namespace

TEST_CASE("task: does not start until awaited", "[task]") {
    drive([]() -> task<> {
        bool started = false;
        task<> t = set_flag(started);
        REQUIRE_FALSE(started);
        REQUIRE(t.valid());
        co_await t;
        REQUIRE(started);
        REQUIRE_FALSE(t.valid());
    }());
}

TEST_CASE("task: co_await gives the value of a task<int>", "[task]") {
    int v = drive([]() -> task<int> {
        int a = co_await answer();
        co_return a + 1;
    }());
    REQUIRE(v == 43);
}

TEST_CASE("task: a task<void> runs its body once when awaited", "[task]") {
    int calls = 0;
    drive([](int& c) -> task<> {
        co_await nothing(c);
        co_await nothing(c);
    }(calls));
    REQUIRE(calls == 2);
}

TEST_CASE("task: an exception propagates to the awaiter with its exact type", "[task]") {
    std::string what;
    bool exact = false;
    drive([](std::string& w, bool& ex) -> task<> {
        try {
            co_await throws_derived();
        } catch (const std::exception& e) {
            w = e.what();
            ex = typeid(e) == typeid(my_derived_error);
        }
    }(what, exact));
    REQUIRE(exact);
    REQUIRE(what == "derived failure");
}

TEST_CASE("task: a move-only result is moved out to the awaiter", "[task]") {
    int v = drive([]() -> task<int> {
        std::unique_ptr<int> p = co_await make_unique_int(9);
        co_return p ? *p : -1;
    }());
    REQUIRE(v == 9);
}

TEST_CASE("task: a million nested awaits complete without growing the stack", "[task]") {
    // Each level awaits the next: without symmetric transfer (start and
    // completion) this recursion would overflow the stack long before the end.
    // Where symmetric transfer is no tail call (g++ -O0), every level past the
    // first few hundred costs stack frames: a deep recursion of awaits is
    // bounded by the stack there, so the debug build checks a shallower one.
#if defined(__OPTIMIZE__)
    constexpr int levels = 1'000'000;
#else
    constexpr int levels = 10'000;
#endif
    int v = drive(depth(levels));
    REQUIRE(v == levels);
}

namespace {
task<int> ready(int i) { co_return i; }
task<long> sum_of_ready(int n) {
    long s = 0;
    for (int i = 0; i < n; ++i) s += co_await ready(i);
    co_return s;
}
} // namespace

TEST_CASE("task: two million awaits of tasks that complete at once do not grow the stack, at any -O level", "[task]") {
    // g++ -O0 turns no symmetric transfer into a tail call: this loop crashed
    // there after about 100k iterations, two frames deeper each time.
    constexpr int n = 2'000'000;
    long s = drive(sum_of_ready(n));
    REQUIRE(s == static_cast<long>(n) * (n - 1) / 2);
}

TEST_CASE("task: frame contents are destroyed exactly once when the task completes", "[task][lifetime]") {
    counted::reset();
    bool ran = false;
    drive([](bool& r) -> task<> {
        int v = co_await frame_with_counted(counted{}, r);
        REQUIRE(v == 7);
        // The awaited task (a temporary) and its frame are gone by now.
        REQUIRE(counted::live() == 0);
    }(ran));
    REQUIRE(ran);
    REQUIRE(counted::live() == 0);
    REQUIRE(counted::double_destroyed() == 0);
    REQUIRE(counted::destroyed() == counted::constructed());
}

TEST_CASE("task: frame contents are destroyed exactly once when the task throws", "[task][lifetime]") {
    counted::reset();
    bool ran = false;
    bool caught = false;
    drive([](bool& r, bool& c) -> task<> {
        try {
            co_await frame_with_counted_throws(counted{}, r);
        } catch (const my_error&) {
            c = true;
        }
        REQUIRE(counted::live() == 0);
    }(ran, caught));
    REQUIRE(ran);
    REQUIRE(caught);
    REQUIRE(counted::live() == 0);
    REQUIRE(counted::double_destroyed() == 0);
}

TEST_CASE("task: destroying a never-started task destroys its frame without running the body", "[task][lifetime]") {
    counted::reset();
    bool ran = false;
    {
        task<int> t = frame_with_counted(counted{}, ran);
        REQUIRE(counted::live() == 1); // the parameter, copied into the frame
    }
    REQUIRE_FALSE(ran);
    REQUIRE(counted::live() == 0);
    REQUIRE(counted::double_destroyed() == 0);
}

TEST_CASE("task: awaiting a task twice throws std::logic_error", "[task][misuse]") {
    int v = drive([]() -> task<int> {
        task<int> t = answer();
        int first = co_await t;
        REQUIRE_THROWS_AS(co_await t, std::logic_error);
        co_return first;
    }());
    REQUIRE(v == 42);
}

TEST_CASE("task: awaiting a moved-from task throws std::logic_error", "[task][misuse]") {
    int v = drive([]() -> task<int> {
        task<int> t = answer();
        task<int> moved = std::move(t);
        REQUIRE_FALSE(t.valid()); // NOLINT(bugprone-use-after-move): that is the point
        REQUIRE_THROWS_AS(co_await t, std::logic_error);
        int r = co_await moved;
        co_return r;
    }());
    REQUIRE(v == 42);
}
