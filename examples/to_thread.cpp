// to_thread.cpp — blocking work off the loop: the loop stays responsive while
// a blocking call runs in the thread pool, a semaphore bounds how many calls
// are in flight, and a timeout really stops a call that accepts a stop_token.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <chrono>
#include <stop_token>
#include <thread>

using namespace std::chrono_literals;
using offload::task;

// A blocking function: it would freeze the loop if called directly.
int slow_lookup(int key) {
    std::this_thread::sleep_for(50ms);
    return key * 10;
}

// A long computation that checks its stop_token: a timeout stops it for real.
long long crunch(std::stop_token stop) {
    long long n = 0;
    while (!stop.stop_requested()) ++n;
    return n;
}

task<int> bounded_lookup(offload::semaphore& sem, int key) {
    auto permit = co_await sem.scoped_acquire(); // at most 4 lookups in flight
    co_return co_await offload::to_thread(slow_lookup, key);
}

task<> amain() {
    offload::lag_monitor lag(1ms); // how late does the loop serve a 1 ms timer?
    lag.start();

    offload::semaphore sem(4);
    std::vector<task<int>> lookups;
    for (int k = 0; k < 16; ++k) lookups.push_back(bounded_lookup(sem, k));
    auto values = co_await offload::gather(std::move(lookups));
    fmt::print("16 lookups, last = {}; loop lag p99 = {} us\n", values.back(),
               std::chrono::duration_cast<std::chrono::microseconds>(lag.stats().p99).count());

    try {
        co_await offload::wait_for(offload::to_thread(crunch), 30ms);
    } catch (const offload::timeout_error&) {
        fmt::print("crunch timed out and was asked to stop\n");
    }
    auto stats = offload::default_thread_pool().stats();
    fmt::print("default pool: {} workers, {} completed, {} cancelled\n", stats.workers, stats.completed,
               stats.cancelled);
}

int main() { offload::run(amain()); }
