// offload/detail/process/worker_process.hpp — the parent's view of one worker
// process: its pid and descriptors (mailboxes, wake-up socket, pidfd), its
// state, the call it runs, and one timer that serves three deadlines (a start
// deadline, task_timeout, and the idle trim of big mailbox pages).
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/timer_heap.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/process/call.hpp>
#include <offload/detail/process/mailbox.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <sys/types.h>
#include <unistd.h>
#include <utility>

namespace offload::detail {

class worker_process;

/// Who handles a worker's timer (the pool core).
struct worker_timer_owner {
    virtual void worker_timer_fired(worker_process& w) noexcept = 0;

protected:
    ~worker_timer_owner() = default;
};

class worker_process final : public timer_node {
public:
    enum class state { starting, idle, busy, retiring, dead };

    worker_process(worker_timer_owner* o, std::size_t i) : owner(o), index(i) {}
    worker_process(const worker_process&) = delete;
    worker_process& operator=(const worker_process&) = delete;
    ~worker_process() { close_fds(); }

    void fire() override { owner->worker_timer_fired(*this); }

    /// Both mailboxes are quiet while the worker is idle (it has read its call
    /// and the parent has read its result), so the parent may drop their pages.
    void trim() noexcept {
        to_worker.release_payload(held, keep);
        to_parent.release_payload(held, keep);
        held = 0;
    }

    void close_fds() noexcept {
        for (int* fd : {&fd_to_worker, &fd_to_parent, &sock, &pidfd})
            if (*fd >= 0) ::close(std::exchange(*fd, -1));
    }

    /// Forgets the previous process before a (re)start.
    void reset(std::size_t mailbox_keep) noexcept {
        close_fds();
        st = state::starting;
        call = nullptr;
        tasks = 0;
        killed = false;
        hello = false;
        seen = 0;
        held = 0;
        keep = mailbox_keep;
    }

    worker_timer_owner* owner;
    std::size_t index;
    // Atomic: worker_pids() (tests, diagnostics) may read these from another
    // thread while a shutdown driven off the loop thread changes them.
    std::atomic<pid_t> pid{-1};
    int pidfd = -1;        // fork and spawn: readable when the child exits
    int fd_to_worker = -1; // mailbox memfds
    int fd_to_parent = -1;
    int sock = -1;         // unix socket for descriptors (shared_buffer)
    mailbox to_worker, to_parent;
    std::uint32_t seen = 0; // the last result sequence number read
    std::atomic<state> st{state::starting};
    process_call* call = nullptr;
    std::size_t tasks = 0;  // calls run (max_tasks_per_child)
    bool killed = false;    // we sent SIGKILL: its death is expected
    bool hello = false;     // it finished starting
    clock::time_point dispatched{};
    loop_core* loop = nullptr;   // where its timer and pidfd are registered
    std::size_t keep = 0;        // mailbox bytes that stay mapped (shared_memory_threshold)
    std::size_t held = 0;        // the largest message since the last trim, if above `keep`
    clock::time_point big_at{};  // when that message was sent or read
};

} // namespace offload::detail
