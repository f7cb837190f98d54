// tests/support/eventually.hpp — a bounded wait for a condition inside a task:
// it yields to the loop (2 ms sleeps) until the predicate holds, so a test
// waits for what it needs instead of sleeping a fixed time that assumes a fast
// machine, and a bug fails the test instead of hanging it.
#pragma once

#include <offload/sleep.hpp>
#include <offload/task.hpp>

#include <chrono>

namespace offload::test {

/// Yields to the loop until `pred()` holds; false after `limit`.
template <class P>
task<bool> eventually(P pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > until) co_return false;
        co_await sleep(std::chrono::milliseconds(2));
    }
    co_return true;
}

} // namespace offload::test
