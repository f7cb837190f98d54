#include <offload/event.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

task<> settle() {
    for (int i = 0; i < 5; ++i) co_await sleep(0ms);
}

task<> wait_and_record(event& ev, std::vector<int>& woken, int id) {
    co_await ev.wait();
    woken.push_back(id);
}

} // namespace

TEST_CASE("event: set wakes every waiter", "[event]") {
    run([]() -> task<> {
        event ev;
        CHECK_FALSE(ev.is_set());
        std::vector<int> woken;
        std::vector<task_handle<>> tasks;
        for (int i = 0; i < 4; ++i) tasks.push_back(create_task(wait_and_record(ev, woken, i)));
        co_await settle();
        CHECK(woken.empty());
        ev.set();
        CHECK(ev.is_set());
        for (auto& t : tasks) co_await t;
        CHECK(woken == std::vector<int>{0, 1, 2, 3});
    }());
}

TEST_CASE("event: wait on a set event returns at once, and clear makes it block again", "[event]") {
    run([]() -> task<> {
        event ev;
        ev.set();
        co_await ev.wait();
        ev.clear();
        CHECK_FALSE(ev.is_set());
        std::vector<int> woken;
        auto t = create_task(wait_and_record(ev, woken, 1));
        co_await settle();
        CHECK(woken.empty());
        ev.set();
        co_await t;
        CHECK(woken == std::vector<int>{1});
    }());
}

TEST_CASE("event: a waiter woken by set still returns if clear follows before it runs", "[event]") {
    run([]() -> task<> {
        event ev;
        std::vector<int> woken;
        auto t = create_task(wait_and_record(ev, woken, 1));
        co_await settle();
        ev.set();
        ev.clear();
        co_await t;
        CHECK(woken == std::vector<int>{1});
    }());
}

TEST_CASE("event: a cancelled waiter leaves and the others are still woken", "[event]") {
    run([]() -> task<> {
        event ev;
        std::vector<int> woken;
        auto a = create_task(wait_and_record(ev, woken, 1));
        auto b = create_task(wait_and_record(ev, woken, 2));
        co_await settle();
        a.cancel();
        co_await settle();
        CHECK(a.cancelled());
        ev.set();
        co_await b;
        CHECK(woken == std::vector<int>{2});
    }());
}

TEST_CASE("event: a waiter cancelled after set, before it ran, throws at its wait", "[event][giveback]") {
    // asyncio's model: the wake-up is not consumed; the await throws.
    run([]() -> task<> {
        event ev;
        bool woke = false, other_woke = false;
        auto body = [](event& e, bool& w) -> task<> {
            co_await e.wait();
            w = true;
        };
        auto t = create_task(body, std::ref(ev), std::ref(woke));
        auto other = create_task(body, std::ref(ev), std::ref(other_woke));
        co_await settle();
        ev.set();
        t.cancel();
        REQUIRE_THROWS_AS(co_await t, cancelled_error);
        CHECK(t.cancelled());
        CHECK_FALSE(woke); // its wait() threw
        co_await other;    // the others are still woken
        CHECK(other_woke);
        CHECK(ev.is_set());
    }());
}

TEST_CASE("event: a cancel once the waiter ran is thrown at its next await", "[event]") {
    run([]() -> task<> {
        event ev;
        bool woke = false;
        auto body = [](event& e, bool& w) -> task<> {
            co_await e.wait();
            w = true;
            co_await sleep(1h);
        };
        auto t = create_task(body, std::ref(ev), std::ref(woke));
        co_await settle();
        ev.set();
        co_await settle();
        t.cancel();
        co_await settle();
        CHECK(woke);
        CHECK(t.cancelled());
    }());
}

TEST_CASE("event: debug mode rejects set() from a foreign thread", "[event]") {
    run([]() -> task<> {
        event_loop::current().set_debug(true);
        event ev;
        std::vector<int> woken;
        auto t = create_task(wait_and_record(ev, woken, 1));
        co_await settle();
        bool threw = false;
        std::thread th([&] {
            try {
                ev.set();
            } catch (const std::logic_error&) {
                threw = true;
            }
        });
        th.join();
        CHECK(threw);
        ev.set();
        co_await t;
        CHECK(woken == std::vector<int>{1});
    }());
}
