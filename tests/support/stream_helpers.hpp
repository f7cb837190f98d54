// tests/support/stream_helpers.hpp — what the stream tests share: eventually()
// (a bounded wait for a condition), the running loop's exception handler
// redirected into a list, and run_fn().
#pragma once

#include <eventually.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace offload::test {

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
