// offload/detail/process/pool_shutdown.hpp — how process_pool_core ends:
// breaking the pool (broken_executor for every call), shutdown from the
// loop's thread or any other, and the destructor's bounded drain that
// kills what does not finish within the grace period, so it never hangs.
#pragma once

#include <offload/detail/base/config.hpp>
#include <offload/detail/process/pool_core.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <exception>
#include <mutex>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>
#include <vector>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

namespace offload::detail {

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void process_pool_core::break_pool(const std::string& why) noexcept {
    if (broken_) return;
    broken_ = true;
    broken_why_ = why;
    fail_pending(std::make_exception_ptr(broken_executor(why)));
    for (auto& s : workers_) {
        if (s->call) {
            s->call->error = std::make_exception_ptr(broken_executor(why));
            counters_.busy.fetch_sub(1, std::memory_order_relaxed);
            counters_.failed.fetch_add(1, std::memory_order_relaxed);
            resolve(std::exchange(s->call, nullptr));
        }
        kill_worker(*s);
    }
    check_all_exited();
}

OFFLOAD_DECL void process_pool_core::begin_shutdown(bool cancel_pending) noexcept {
    if (cancel_pending) fail_pending(closed_error());
    for (auto& s : workers_) {
        if (s->st == worker_process::state::idle && pending_.empty()) retire(*s);
        if (s->st == worker_process::state::starting && !loop_) kill_worker(*s);
    }
    check_all_exited();
}

OFFLOAD_DECL void process_pool_core::check_all_exited() noexcept {
    if (!closed_.load()) return;
    for (auto& s : workers_)
        if (s->st != worker_process::state::dead) return;
    {
        std::lock_guard lk(mu_);
        all_exited_ = true;
    }
    exited_cv_.notify_all();
}

// Drives the pool without the loop (shutdown on the loop thread, the
// destructor): waits for results and deaths with poll(); past `deadline`
// it kills whatever still runs.
OFFLOAD_DECL void process_pool_core::drive_blocking(std::chrono::steady_clock::time_point deadline) noexcept {
    bool killed_all = false;
    auto hard_stop = deadline + std::chrono::seconds(5);
    for (;;) {
        bool alive = false;
        for (auto& s : workers_) alive = alive || s->st != worker_process::state::dead;
        if (!alive) return;
        auto now = std::chrono::steady_clock::now();
        if (!killed_all && now >= deadline) {
            for (auto& s : workers_) kill_worker(*s);
            killed_all = true;
        }
        if (now >= hard_stop) return; // unkillable (D state?): give up rather than hang
        std::vector<pollfd> pf;
        pf.push_back({eventfd_, POLLIN, 0});
        if (forkserver_.running()) pf.push_back({forkserver_.fd(), POLLIN, 0});
        for (auto& s : workers_)
            if (s->pidfd >= 0 && s->st != worker_process::state::dead) pf.push_back({s->pidfd, POLLIN, 0});
        auto wait = std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(50),
                                                                  (killed_all ? hard_stop : deadline) - now);
        ::poll(pf.data(), pf.size(),
               static_cast<int>(
                   std::max<long long>(1, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count())));
        on_event();
        if (forkserver_.running()) on_server();
        for (auto& s : workers_) reap(*s);
        // Workers that became idle (or ready) while we drove: ask them to leave.
        for (auto& s : workers_)
            if ((s->st == worker_process::state::idle) && pending_.empty()) retire(*s);
    }
}

OFFLOAD_DECL void process_pool_core::shutdown(bool wait, bool cancel_pending) {
    loop_core* bound;
    {
        std::lock_guard lk(mu_);
        closed_.store(true);
        bound = loop_;
    }
    // On the loop's own thread, running or not (between two runs of it, a
    // step posted to it would wait for the next run), drive the pool here.
    bool on_loop_thread = bound && bound->on_owner_thread(); // running it now, or the last to run it
    if (!bound || on_loop_thread || in_destructor_) {
        begin_shutdown(cancel_pending);
        if (wait || in_destructor_) {
            auto grace = in_destructor_ ? std::chrono::seconds(2) : std::chrono::hours(24 * 365);
            drive_blocking(std::chrono::steady_clock::now() + grace);
        }
    } else {
        bound->call_soon_threadsafe([this, cancel_pending] { begin_shutdown(cancel_pending); });
        if (wait) {
            std::unique_lock lk(mu_);
            exited_cv_.wait(lk, [this] { return all_exited_; });
        }
    }
    if (in_destructor_) {
        unbind();
        for (auto& s : workers_) s->close_fds();
        forkserver_.stop(); // it sees EOF and exits
        if (eventfd_ >= 0) ::close(std::exchange(eventfd_, -1));
    }
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
