// offload/detail/loop/fd_awaiter.hpp — the awaiter of event_loop::readable /
// writable: one task waiting for one direction of one fd.
#pragma once

#include <offload/detail/loop/waiter.hpp>

#include <coroutine>
#include <source_location>

namespace offload::detail {

struct fd_awaiter final : waiter {
    loop_core* core;
    int fd;
    bool write;
    bool registered = false;

    fd_awaiter(loop_core* l, int f, bool w, std::source_location loc) : waiter(loc), core(l), fd(f), write(w) {}
    // Movable until awaited (so it can be handed to gather or wait_for).
    fd_awaiter(fd_awaiter&& o) noexcept : waiter(o.where), core(o.core), fd(o.fd), write(o.write) {}
    fd_awaiter& operator=(const fd_awaiter&) = delete;
    ~fd_awaiter() { unregister(); }

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!arm(h)) return false;
        core->set_io(
            fd, write,
            [this] {
                unregister();
                wake();
            },
            true);
        registered = true;
        return true;
    }
    void await_resume() const { throw_if_cancelled(); }
    void cancel() noexcept override {
        unregister();
        wake_cancelled();
    }
    void unregister() noexcept {
        if (registered) {
            registered = false;
            core->clear_io(fd, write);
        }
    }
};

} // namespace offload::detail
