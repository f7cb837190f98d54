#include <offload/task_group.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>

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

// --- a failing child stops the owner's body (issue 10, item 4) --------------------

TEST_CASE("task_group: a failing child stops the owner's sleeping body; with_task_group rethrows the child's error",
          "[task_group][cancel]") {
    probe p;
    bool body_went_on = false;
    bool body_saw_cancel = false;
    run([](probe& p, bool& went_on, bool& saw_cancel) -> task<> {
        std::string what;
        try {
            co_await with_task_group([&](task_group& tg) -> task<> {
                tg.create_task(worker(p, 10s));
                tg.create_task(failer(2ms));
                try {
                    co_await sleep(2s); // the group stops this at once
                } catch (const cancelled_error&) {
                    saw_cancel = true;
                    throw;
                }
                went_on = true;
            });
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CHECK(what == "child broke");
        co_await sleep(1ms); // the group took its cancellation of this task back
    }(p, body_went_on, body_saw_cancel));
    CHECK(body_saw_cancel);
    CHECK_FALSE(body_went_on);
    CHECK(p.cleaned == 1); // the sibling was cancelled and unwound
}

TEST_CASE("task_group: a failing child stops an owner that waits in a nested group's wait()", "[task_group][cancel]") {
    probe p;
    run([](probe& p) -> task<> {
        std::string what;
        try {
            co_await with_task_group([&](task_group& outer) -> task<> {
                outer.create_task(failer(2ms));
                co_await with_task_group([&](task_group& inner) -> task<> {
                    inner.create_task(worker(p, 2s));
                    co_return; // then waits in the inner group's wait()
                });
            });
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CHECK(what == "child broke");
    }(p));
    CHECK(p.cleaned == 1); // the inner group's child was cancelled, not waited for 2 s
    CHECK(p.done == 0);
}

TEST_CASE("task_group: with the plain form, the body's cancelled_error leads to wait(), which rethrows",
          "[task_group][cancel]") {
    run([]() -> task<> {
        task_group tg;
        tg.create_task(failer(2ms));
        bool stopped = false;
        try {
            co_await sleep(2s);
        } catch (const cancelled_error&) {
            stopped = true;
        }
        CHECK(stopped);
        REQUIRE_THROWS_AS(co_await tg.wait(), std::runtime_error);
        co_await sleep(1ms); // nothing pending on this task
    }());
}

TEST_CASE("task_group: with_task_group gives the body's result once every child finished", "[task_group]") {
    probe p;
    int v = run([](probe& p) -> task<int> {
        co_return co_await with_task_group([&](task_group& tg) -> task<int> {
            tg.create_task(worker(p, 5ms));
            tg.create_task(worker(p, 1ms));
            co_return 42;
        });
    }(p));
    CHECK(v == 42);
    CHECK(p.done == 2);
}

TEST_CASE("task_group: a body that throws cancels the children, waits for them, and its error is rethrown",
          "[task_group]") {
    probe p;
    run([](probe& p) -> task<> {
        std::string what;
        try {
            co_await with_task_group([&](task_group& tg) -> task<> {
                tg.create_task(worker(p, 10s));
                co_await sleep(1ms);
                throw std::logic_error("body broke");
            });
        } catch (const std::logic_error& e) {
            what = e.what();
        }
        CHECK(what == "body broke");
        CHECK(p.cleaned == 1); // unwound before with_task_group returned
    }(p));
}

TEST_CASE("task_group: cancelling the task running with_task_group cancels the children and ends cancelled",
          "[task_group][cancel]") {
    probe p;
    run([](probe& p) -> task<> {
        auto h = create_task(
            [](probe& p) -> task<> {
                co_await with_task_group([&](task_group& tg) -> task<> {
                    tg.create_task(worker(p, 10s));
                    co_await sleep(10s);
                });
            },
            std::ref(p));
        co_await sleep(1ms);
        h.cancel();
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK(p.cleaned == 1);
    }(p));
}
