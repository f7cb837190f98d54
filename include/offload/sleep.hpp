// offload/sleep.hpp — sleep(d): suspend the current task for a duration.
// The awaiter embeds its timer node, so sleeping allocates nothing.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/timer_heap.hpp>
#include <offload/detail/loop/waiter.hpp>

#include <chrono>
#include <source_location>

namespace offload {

namespace detail {
struct sleep_awaiter final : waiter, timer_node {
    clock::duration delay;

    sleep_awaiter(clock::duration d, std::source_location loc) : waiter(loc), delay(d) {}
    // Movable until awaited (so it can be handed to gather or wait_for).
    sleep_awaiter(sleep_awaiter&& o) noexcept : waiter(o.where), timer_node(), delay(o.delay) {}
    sleep_awaiter& operator=(const sleep_awaiter&) = delete;
    ~sleep_awaiter() {
        if (queued()) loop->remove_timer(this);
    }

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!arm(h)) return false;
        if (delay.count() <= 0) { // a bare yield: straight to the back of the ready queue
            yielding = true;
            loop->schedule(ctx, h);
            return true;
        }
        deadline = clock::now() + delay;
        loop->add_timer(this);
        return true;
    }
    void await_resume() {
        disarm(); // a yield resumes without wake()
        throw_if_cancelled();
    }

    void fire() override { wake(); }
    void cancel() noexcept override {
        if (yielding) { // the resumption is queued already; it will throw
            cancelled = true;
            disarm();
            return;
        }
        loop->remove_timer(this);
        wake_cancelled();
    }

    bool yielding = false;
};
} // namespace detail

/// Suspends the current task for `d` (at least; a zero or negative `d` still
/// yields to the loop once, like asyncio.sleep(0)).
/// Cancellation: the timer is removed and the await throws cancelled_error.
template <class Rep, class Period>
[[nodiscard]] detail::sleep_awaiter sleep(std::chrono::duration<Rep, Period> d,
                                          std::source_location loc = std::source_location::current()) {
    return detail::sleep_awaiter(std::chrono::ceil<detail::clock::duration>(d), loc);
}

} // namespace offload
