// tests/support/stream_helpers.hpp — what the stream tests share: a bounded
// wait for a condition (yielding to the loop, never a fixed sleep), and the
// running loop's exception handler redirected into a counter.
#pragma once

#include <offload/detail/loop/core.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace offload::test {

/// Yields to the loop until `pred()` holds; false after `limit`.
template <class P>
task<bool> until(P pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) co_return false;
        co_await sleep(std::chrono::milliseconds(1));
    }
    co_return true;
}

/// Collects the messages the running loop's exception handler receives.
inline void capture_loop_errors(std::vector<std::string>& into) {
    detail::loop_core::current()->set_exception_handler([&into](const exception_context& c) {
        std::string what = c.message;
        try {
            if (c.exception) std::rethrow_exception(c.exception);
        } catch (const std::exception& e) {
            what += ": " + std::string(e.what());
        } catch (...) {
        }
        into.push_back(what);
    });
}

} // namespace offload::test

namespace offload::test {

/// run(fn()) with `fn` (and its captures) alive until the task ends.
template <class F>
void run_fn(F fn) {
    offload::run(fn());
}

} // namespace offload::test
