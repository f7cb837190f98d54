// Tests for offload/errors.hpp: the hierarchy DESIGN.md fixes (cancelled_error
// outside std::exception, so an everyday catch-all does not swallow a
// cancellation), and what each error says.
#include <offload/errors.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <type_traits>

using namespace offload;
using namespace std::chrono_literals;

static_assert(!std::is_base_of_v<std::exception, cancelled_error>);
static_assert(std::is_base_of_v<std::exception, timeout_error>);
static_assert(!std::is_base_of_v<timeout_error, cancelled_error> && !std::is_base_of_v<cancelled_error, timeout_error>);
static_assert(std::is_base_of_v<std::exception, executor_closed>);
static_assert(std::is_base_of_v<broken_executor, worker_crashed>);
static_assert(std::is_base_of_v<std::exception, remote_error>);
static_assert(std::is_base_of_v<std::exception, serialization_error>);

namespace {
// A request handler as people write them: log any error and carry on.
task<> handler(int& handled, int& swallowed) {
    for (;;) {
        try {
            co_await sleep(1ms);
            ++handled;
        } catch (const std::exception&) {
            ++swallowed; // would keep a cancelled task running if cancelled_error were a std::exception
        }
    }
}
} // namespace

TEST_CASE("errors: catch (const std::exception&) does not swallow a cancellation", "[errors]") {
    int handled = 0;
    int swallowed = 0;
    run([](int& handled, int& swallowed) -> task<> {
        auto h = create_task(handler(handled, swallowed));
        co_await sleep(10ms);
        h.cancel();
        REQUIRE_THROWS_AS(co_await h, cancelled_error);
        CHECK(h.cancelled());
    }(handled, swallowed));
    CHECK(handled > 0);
    CHECK(swallowed == 0);
}

TEST_CASE("errors: every error says what happened and what to do", "[errors]") {
    CHECK(std::string(cancelled_error().what()).find("cancelled") != std::string::npos);
    CHECK(std::string(cancelled_error("stop").what()) == "stop");
    CHECK(std::string(timeout_error().what()).find("timeout") != std::string::npos);
    worker_crashed w("gone", 9, 0, 1234);
    CHECK(w.signal() == 9);
    CHECK(w.exit_status() == 0);
    CHECK(w.pid() == 1234);
    remote_error r("my::error", "boom");
    CHECK(r.type_name() == "my::error");
    CHECK(std::string(r.what()) == "boom");
}
