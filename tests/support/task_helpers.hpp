// tests/support/task_helpers.hpp — small coroutines the task tests share.
#pragma once

#include <offload/sleep.hpp>
#include <offload/task.hpp>

#include <chrono>

namespace offload::test {

/// Sleeps `d`, then returns `v`.
inline task<int> value_after(int v, std::chrono::milliseconds d) {
    co_await sleep(d);
    co_return v;
}

} // namespace offload::test
