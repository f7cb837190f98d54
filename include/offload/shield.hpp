// offload/shield.hpp — shield(awaitable), asyncio.shield: protect an
// operation from the cancellation of the task that awaits it. The operation
// runs as its own task; cancelling the awaiting task makes the await throw
// cancelled_error at once, while the operation runs on to its end.
#pragma once

#include <offload/detail/loop/waiter.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <coroutine>
#include <source_location>

namespace offload {

namespace detail {
/// Waits for a task to end; a cancellation of the waiter stops only the wait.
struct shielded_done_awaiter final : waiter, done_listener {
    task_state_base* st;
    shielded_done_awaiter(task_state_base* s, std::source_location loc) : waiter(loc), st(s) {}
    shielded_done_awaiter(const shielded_done_awaiter&) = delete;
    shielded_done_awaiter& operator=(const shielded_done_awaiter&) = delete;

    bool await_ready() const noexcept { return st->done; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!arm(h)) return false; // already cancelled: throw now, the task runs on
        st->add_listener(this);
        return true;
    }
    void await_resume() const { throw_if_cancelled(); }
    void on_done() noexcept override { wake(); }
    void cancel() noexcept override {
        intrusive_list<done_listener>::erase(this);
        wake_cancelled();
    }
};
} // namespace detail

/// Awaits `aw` (a task<T>, a task_handle<T> or any awaitable, run as its own
/// task) and gives its result or rethrows its exception; if the awaiting task
/// is cancelled meanwhile, the await throws cancelled_error at once and the
/// operation is left running to its end. An exception it then ends with is
/// reported to the loop's exception handler unless someone awaits or asks a
/// handle for it (asyncio drops it silently; we never lose an error). Pass a
/// task_handle to keep a way to reach the operation after a cancellation.
///
/// Thread safety: loop-local.
/// Example: `co_await shield(save_to_disk(doc));  // a cancelled request still saves`
template <class A>
    requires detail::gatherable<A>
task<detail::child_value_t<A>> shield(A aw, std::source_location loc = std::source_location::current()) {
    auto h = detail::to_handle(std::move(aw));
    co_await detail::shielded_done_awaiter(detail::state_of(h), loc);
    co_return co_await h; // finished: its value, or its own exception
}

} // namespace offload
