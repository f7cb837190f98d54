// offload/detail/tasks/list_waiter.hpp — the one skeleton of every awaiter
// that waits in a primitive's intrusive FIFO list (semaphore, mutex, event,
// queue get/put/join): the awaiter is the list node, so waiting allocates
// nothing, and a cancelled waiter unlinks itself in O(1). A primitive adds
// only what differs: when it is ready at once, and what it hands over.
#pragma once

#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/loop/waiter.hpp>

#include <coroutine>
#include <source_location>

namespace offload::detail {

/// `Derived` is the awaiter type its primitive keeps in an intrusive_list<Derived>.
template <class Derived>
struct list_waiter : waiter, list_hook {
    explicit list_waiter(std::source_location loc) noexcept : waiter(loc) {}
    // Movable until awaited (so it can be handed to gather or wait_for).
    list_waiter(list_waiter&& o) noexcept : waiter(o.where), list_hook() {}
    list_waiter& operator=(const list_waiter&) = delete;
    // A frame destroyed while waiting (loop teardown) leaves the list.
    ~list_waiter() { unlink(); }

    /// For await_suspend: registers with the task and joins `list`; false
    /// (do not suspend: the await throws) if a cancellation is pending.
    bool suspend_in(intrusive_list<Derived>& list, std::coroutine_handle<> h) {
        if (!arm(h)) return false;
        list.push_back(static_cast<Derived*>(this));
        return true;
    }

    void await_resume() const { throw_if_cancelled(); }

    void cancel() noexcept override {
        // Once served (a permit, an item, a wake-up) we are unlinked and no
        // longer ctx->waiter, so this only runs while queued; the scheduler
        // records cancel_pending otherwise, and what was handed over is kept.
        if (!linked()) return;
        unlink();
        wake_cancelled();
    }
};

/// In debug mode, throws if the caller is not on the loop of the task that
/// waits first in `list`. With nobody waiting there is no loop to race with.
template <class W>
void check_waiters_thread(const intrusive_list<W>& list, const char* what) {
    if (W* w = list.front()) w->loop->check_thread(what);
}

} // namespace offload::detail
