// hello.cpp — the core of offload in one screen: tasks, create_task, gather,
// and a timeout.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <chrono>

using namespace std::chrono_literals;
using offload::task;

// A coroutine: lazy until awaited, like an asyncio coroutine.
task<int> slow_square(int x) {
    co_await offload::sleep(10ms); // the loop serves other tasks meanwhile
    co_return (x * x);
}

task<> ticker() {
    for (int i = 0;; ++i) {
        fmt::print("tick {}\n", i);
        co_await offload::sleep(15ms);
    }
}

task<int> amain() {
    // Run three coroutines concurrently; results come back in argument order.
    auto [a, b, c] = co_await offload::gather(slow_square(2), slow_square(3), slow_square(4));
    fmt::print("gather: {} {} {}\n", a, b, c);

    // A background task with a handle we can await or cancel.
    auto tick = offload::create_task(ticker(), "ticker");

    // A timeout cancels the slow operation and throws timeout_error.
    try {
        co_await offload::wait_for(offload::sleep(1s), 40ms);
    } catch (const offload::timeout_error&) {
        fmt::print("timed out, as expected\n");
    }
    tick.cancel(); // the ticker's sleep throws cancelled_error and it unwinds
    co_return a + b + c;
}

int main() {
    int sum = offload::run(amain()); // like asyncio.run
    fmt::print("sum = {}\n", sum);
    return sum == 29 ? 0 : 1;
}
