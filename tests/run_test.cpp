// Tests of offload::run (asyncio.run): result and exception, misuse inside a
// running loop, and that tasks left running are cancelled and unwound first.
#include <offload/run.hpp>

#include <offload/event_loop.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <counted.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <typeinfo>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::counted;

namespace {

struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct my_derived_error : my_error {
    using my_error::my_error;
};

task<int> value_after_sleep(int v) {
    co_await sleep(1ms);
    co_return v;
}

task<int> fails_after_sleep() {
    co_await sleep(1ms);
    throw my_derived_error("run failure");
}

struct leftover_probe {
    bool started = false;
    bool cleaned_up = false;
};

task<> sleeps_forever(leftover_probe& p) {
    counted guard;
    p.started = true;
    try {
        co_await sleep(24h);
    } catch (const cancelled_error&) {
        p.cleaned_up = true;
        throw;
    }
}

task<int> leaves_a_task_behind(leftover_probe& p) {
    create_task(sleeps_forever(p), "leftover");
    co_await sleep(0ms); // let it start and reach its sleep
    co_return 11;
}

} // namespace

TEST_CASE("run: returns the task's value", "[run]") {
    int v = run(value_after_sleep(5));
    REQUIRE(v == 5);
    REQUIRE(event_loop::current_or_null() == nullptr); // no loop left behind
}

TEST_CASE("run: rethrows the task's exception with its exact type", "[run]") {
    bool exact = false;
    std::string what;
    try {
        run(fails_after_sleep());
    } catch (const std::exception& e) {
        exact = typeid(e) == typeid(my_derived_error);
        what = e.what();
    }
    REQUIRE(exact);
    REQUIRE(what == "run failure");
    REQUIRE(event_loop::current_or_null() == nullptr);
}

TEST_CASE("run: called inside a running loop throws std::logic_error", "[run][misuse]") {
    int v = run([]() -> task<int> {
        REQUIRE_THROWS_AS(run(value_after_sleep(1)), std::logic_error);
        int r = co_await value_after_sleep(2); // the running loop is fine
        co_return r;
    }());
    REQUIRE(v == 2);
}

TEST_CASE("run: cancels tasks left running and lets them clean up before it returns", "[run][cancel]") {
    counted::reset();
    leftover_probe p;
    int v = run(leaves_a_task_behind(p));
    REQUIRE(v == 11);
    REQUIRE(p.started);
    REQUIRE(p.cleaned_up);          // its catch block ran: cancelled, not just destroyed
    REQUIRE(counted::live() == 0);  // and its frame is gone
    REQUIRE(counted::double_destroyed() == 0);
}

TEST_CASE("run: cancels leftovers even when the main task fails", "[run][cancel]") {
    counted::reset();
    leftover_probe p;
    REQUIRE_THROWS_AS(run([](leftover_probe& pr) -> task<> {
                          create_task(sleeps_forever(pr), "leftover");
                          co_await sleep(0ms);
                          throw my_error("main failed");
                      }(p)),
                      my_error);
    REQUIRE(p.cleaned_up);
    REQUIRE(counted::live() == 0);
}
