#include <offload/task_group.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>

using namespace offload;
using namespace std::chrono_literals;

namespace {
struct probe {
    int done = 0;
    int cleaned = 0;
};

task<> worker(probe& p, std::chrono::milliseconds d) {
    try {
        co_await sleep(d);
    } catch (const cancelled_error&) {
        ++p.cleaned;
        throw;
    }
    ++p.done;
}

task<> failer(std::chrono::milliseconds d) {
    co_await sleep(d);
    throw std::runtime_error("child broke");
}
} // namespace

TEST_CASE("task_group: wait() returns when every child has finished", "[task_group]") {
    probe p;
    run([](probe& p) -> task<> {
        task_group tg;
        for (int i = 0; i < 10; ++i) tg.create_task(worker(p, std::chrono::milliseconds(i)));
        co_await tg.wait();
        CHECK(p.done == 10);
        CHECK(tg.running() == 0);
    }(p));
}

TEST_CASE("task_group: a failing child cancels its siblings and wait() rethrows it", "[task_group]") {
    probe p;
    run([](probe& p) -> task<> {
        task_group tg;
        tg.create_task(worker(p, 10s));
        tg.create_task(failer(2ms));
        tg.create_task(worker(p, 10s));
        bool threw = false;
        try {
            co_await tg.wait();
        } catch (const std::runtime_error& e) {
            threw = std::string(e.what()) == "child broke";
        }
        CHECK(threw);
        CHECK(p.cleaned == 2);
        CHECK(tg.running() == 0);
        REQUIRE_THROWS_AS(tg.create_task(worker(p, 1ms)), std::logic_error);
    }(p));
}

TEST_CASE("task_group: a child may add children while the group waits", "[task_group]") {
    probe p;
    run([](probe& p) -> task<> {
        task_group tg;
        tg.create_task([](task_group& tg, probe& p) -> task<> {
            co_await sleep(2ms);
            tg.create_task(worker(p, 5ms));
        }(tg, p));
        co_await tg.wait();
        CHECK(p.done == 1);
    }(p));
}

TEST_CASE("task_group: cancelling the waiting task cancels all children and waits for them", "[task_group]") {
    probe p;
    run([](probe& p) -> task<> {
        auto h = create_task(
            [](probe& p) -> task<> {
                task_group tg;
                tg.create_task(worker(p, 10s));
                tg.create_task(worker(p, 10s));
                co_await tg.wait();
            },
            std::ref(p));
        co_await sleep(5ms);
        h.cancel();
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK(p.cleaned == 2);
    }(p));
}

TEST_CASE("task_group: a cancelled child does not fail the group", "[task_group]") {
    probe p;
    run([](probe& p) -> task<> {
        task_group tg;
        auto victim = tg.create_task(worker(p, 10s));
        tg.create_task(worker(p, 20ms));
        co_await sleep(1ms);
        victim.cancel();
        co_await tg.wait();
        CHECK(p.cleaned == 1);
        CHECK(p.done == 1);
        CHECK(victim.cancelled());
    }(p));
}

TEST_CASE("task_group: handles give each child's result", "[task_group]") {
    run([]() -> task<> {
        task_group tg;
        auto a = tg.create_task([]() -> task<int> { co_return 1; }());
        auto b = tg.create_task([]() -> task<int> {
            co_await sleep(1ms);
            co_return 2;
        }());
        co_await tg.wait();
        CHECK(a.result() + b.result() == 3);
    }());
}
