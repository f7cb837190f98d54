// offload/detail/base/spin.hpp — the one spin-then-park helper. Every hand-off
// in the library (the loop waiting for completions, thread-pool workers
// waiting for calls, process workers waiting in their mailbox) first spins
// for a short budget, because a wake-up across cores costs tens of
// microseconds while a quick call answers in one; then it parks (epoll,
// futex). Tuning where to stop spinning happens here, in one place.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/cpu.hpp>

#include <chrono>
#include <sched.h>

namespace offload::detail {

/// How a spin behaves.
struct spin_policy {
    /// The longest the spin lasts before the caller parks.
    std::chrono::nanoseconds budget = std::chrono::microseconds(50);
    /// Polls after which every further poll also yields the CPU (sched_yield),
    /// for when the thread we wait for may share our core; 0 = yield from the
    /// start, never_yield = only pause.
    unsigned yield_after = never_yield;

    static constexpr unsigned never_yield = ~0u;
};

/// Polls `ready()` until it returns true (returns true) or the budget is
/// spent (returns false; the caller then parks). The clock is read once
/// every 64 polls, so a poll costs about a pause instruction.
template <class Ready>
bool spin_until(const spin_policy& policy, Ready&& ready) {
    if (policy.budget.count() <= 0) return ready();
    const auto until = clock::now() + policy.budget;
    for (unsigned i = 1;; ++i) {
        if (ready()) return true;
        if (i > policy.yield_after)
            ::sched_yield();
        else
            cpu_relax();
        if ((i & 63) == 0 && clock::now() >= until) return false;
    }
}

} // namespace offload::detail
