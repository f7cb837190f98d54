// offload/detail/process/pool_workers.hpp — the worker side of
// process_pool_core: starting a worker by the pool's start method, watching
// it from the loop (pidfd or the forkserver's exit reports), and what its
// death means — the call it ran fails (or ends cancelled or timed out), the
// worker is replaced, or, if it never became ready, the pool breaks.
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

OFFLOAD_DECL void process_pool_core::start_worker(std::size_t index) {
    auto& w = *workers_[index];
    w.reset(opts_.shared_memory_threshold);
    w.fd_to_worker = mailbox::create_fd(opts_.shared_memory_threshold, "offload-call");
    w.fd_to_parent = mailbox::create_fd(opts_.shared_memory_threshold, "offload-result");
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        throw std::system_error(errno, std::generic_category(), "offload: socketpair for a worker");
    w.sock = sv[0];
    w.to_worker.attach(w.fd_to_worker);
    w.to_parent.attach(w.fd_to_parent);
    w.to_parent.hdr()->sleeping.store(1, std::memory_order_relaxed); // the loop waits in epoll: always wake it
    // The init message is in place before the worker starts; it reads it first.
    worker_init init;
    if (opts_.limits.cpu_seconds) init.cpu_seconds = opts_.limits.cpu_seconds->count();
    if (opts_.limits.address_space) init.address_space = *opts_.limits.address_space;
    if (opts_.initializer) init.initializer = make_fn_ref(reinterpret_cast<const void*>(opts_.initializer));
    init.nice = static_cast<std::int32_t>(opts_.nice);
    byte_writer iw(w.to_worker);
    encode_init(iw, init);
    mailbox_send(w.to_worker, msg_kind::init, iw, -1, -1);
    worker_fds f{w.fd_to_worker, w.fd_to_parent, eventfd_, sv[1]};
    try {
        switch (opts_.start) {
        case start_method::fork:
            if (debug_fork_warning()) warn_threaded_fork();
            w.pid = start_forked(f);
            break;
        case start_method::spawn: w.pid = start_spawned(f); break;
        case start_method::forkserver: w.pid = forkserver_.spawn(f); break;
        }
    } catch (...) {
        ::close(sv[1]);
        throw;
    }
    ::close(sv[1]);
    if (opts_.start != start_method::forkserver) {
        w.pidfd = pidfd_open(w.pid);
        if (w.pidfd < 0) {
            ::kill(w.pid, SIGKILL);
            ::waitpid(w.pid, nullptr, 0);
            throw std::system_error(errno, std::generic_category(), "offload: pidfd_open (Linux 5.3+ is required)");
        }
    }
    if (loop_) watch(w);
}

// Registers a worker with the bound loop: its death (pidfd) and, until it is
// ready, a start deadline that catches a spawned worker that never reaches
// worker_main.
OFFLOAD_DECL void process_pool_core::watch(worker_process& w) {
    w.loop = loop_;
    if (w.pidfd >= 0) {
        auto* wp = &w;
        loop_->set_io(
            w.pidfd, false, [this, wp] { reap(*wp); }, false);
    }
    if (!w.hello) {
        w.deadline = clock::now() + start_deadline;
        loop_->add_timer(&w);
    } else if (w.st == worker_process::state::idle && w.held) { // the idle trim a gone loop dropped
        w.deadline = w.big_at + mailbox_hold;
        loop_->add_timer(&w);
    }
}

// A child worker (fork, spawn) that exited: collect its status (no zombie).
OFFLOAD_DECL void process_pool_core::reap(worker_process& w) noexcept {
    if (w.pidfd < 0 || w.st == worker_process::state::dead) return;
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(w.pidfd), &si, WEXITED | WNOHANG) < 0 ||
        si.si_pid == 0)
        return;
    on_exit(w, si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f));
}

// How a worker died, in words: "signal 9 (Killed)" or "status 3".
OFFLOAD_DECL std::string process_pool_core::describe_death(int sig, int code) {
    return sig ? fmt::format("signal {} ({})", sig, ::strsignal(sig)) : fmt::format("status {}", code);
}

// The call a dead worker was running resolves: cancelled (we killed it for a
// cancellation), timeout_error (for task_timeout) or worker_crashed.
OFFLOAD_DECL void process_pool_core::resolve_orphaned_call(worker_process& w, process_call* c, int sig,
                                                           int code) noexcept {
    counters_.busy.fetch_sub(1, std::memory_order_relaxed);
    if (c->end == process_call::fate::cancelled) {
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
        c->cancelled = true;
    } else if (c->end == process_call::fate::timed_out) {
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
        c->error = std::make_exception_ptr(timeout_error(fmt::format(
            "offload::timeout_error: a process-pool call ran past its timeout; its worker (pid {}) was killed "
            "and replaced",
            w.pid)));
    } else {
        counters_.crashes.fetch_add(1, std::memory_order_relaxed);
        counters_.failed.fetch_add(1, std::memory_order_relaxed);
        std::string how = sig ? fmt::format("was killed by {}", describe_death(sig, code))
                              : fmt::format("exited with status {}", code);
        c->error = std::make_exception_ptr(worker_crashed(
            fmt::format("offload::worker_crashed: the worker process (pid {}) running this call {}; only this "
                        "call failed and the worker was replaced",
                        w.pid, how),
            sig, code, w.pid));
    }
    resolve(c);
}

// Why a worker that died before it was ready breaks the pool.
OFFLOAD_DECL std::string process_pool_core::startup_failure(const worker_process& w, pid_t pid, int sig, int code) {
    if (sig == 0 && code == exit_code::initializer_threw)
        return "offload::broken_executor: the process pool's initializer threw in a new worker (see its message "
               "on stderr); the pool is broken";
    if (w.killed)
        return fmt::format("offload::broken_executor: worker pid {} did not become ready within {} s. With "
                           "start_method::spawn, call offload::process_pool::worker_main(argc, argv) first thing "
                           "in main",
                           pid, start_deadline.count());
    return fmt::format("offload::broken_executor: worker pid {} exited before it was ready ({}). With "
                       "start_method::spawn, call offload::process_pool::worker_main(argc, argv) first thing in main",
                       pid, describe_death(sig, code));
}

OFFLOAD_DECL void process_pool_core::on_exit(worker_process& w, int status) noexcept {
    if (w.st == worker_process::state::dead) return;
    worker_process::state was = w.st;
    w.st = worker_process::state::dead;
    if (loop_) {
        if (w.pidfd >= 0) loop_->clear_io(w.pidfd, false);
        loop_->remove_timer(&w);
    }
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    bool expected = was == worker_process::state::retiring || w.killed;
    if (process_call* c = std::exchange(w.call, nullptr))
        resolve_orphaned_call(w, c, sig, code);
    else if (!expected && was != worker_process::state::starting)
        counters_.crashes.fetch_add(1, std::memory_order_relaxed);
    pid_t old = w.pid;
    w.close_fds();
    // SIGKILL from someone else (the OOM killer, an operator) before the worker
    // was ready says nothing about the next one: replace it, a few times in a row.
    const bool killed_while_starting = !w.hello && !w.killed && sig == SIGKILL && ++start_kills_ <= max_start_kills;
    if (killed_while_starting) counters_.crashes.fetch_add(1, std::memory_order_relaxed);
    // Shut down without cancel_pending, the queued calls still run: a worker that
    // dies during that drain is replaced while any is queued, or they would wait
    // forever with no worker left to run them.
    const bool draining = closed_.load() && !broken_ && !in_destructor_ && !pending_.empty();
    if (!w.hello && !killed_while_starting && !in_destructor_ && (!closed_.load() || draining)) {
        // It never became ready (the initializer threw, a spawned program did not
        // call worker_main, a crash while starting): restarting would fail the same way.
        break_pool(startup_failure(w, old, sig, code));
        return;
    }
    if (broken_ || (closed_.load() && !draining)) {
        check_all_exited();
        return;
    }
    if (!expected && opts_.on_crash == crash_policy::break_pool) {
        break_pool(fmt::format("offload::broken_executor: worker pid {} died ({}) and the pool's crash_policy is "
                               "break_pool; create a new pool",
                               old, describe_death(sig, code)));
        return;
    }
    try {
        start_worker(w.index);
        counters_.respawns.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::exception& e) {
        break_pool(fmt::format("offload::broken_executor: could not replace a dead worker: {}", e.what()));
        return;
    }
    dispatch();
}

OFFLOAD_DECL void process_pool_core::on_server() noexcept {
    for (;;) {
        drain_early_exits();
        forkserver_msg m;
        int got = forkserver_.read_report(m);
        if (got == 0) {
            if (loop_) loop_->clear_io(forkserver_.fd(), false);
            if (!closed_.load()) break_pool("offload::broken_executor: the pool's forkserver died");
            forkserver_died();
            return;
        }
        if (got < 0) return;
        if (m.type == forkserver_msg::exited)
            if (auto* w = find_pid(m.pid)) on_exit(*w, m.status);
    }
}

// The forkserver is gone, and its workers with it (they die with their parent:
// PDEATHSIG, or the getppid() check of one not yet armed). Only the server could
// report their exits, so count them dead here; otherwise the pool would wait for
// reports that never come, and drive_blocking() would poll the server's hung-up
// socket (always readable) until its bound. No kill(): the pid of a worker
// already reaped by init may have been reused.
OFFLOAD_DECL void process_pool_core::forkserver_died() noexcept {
    forkserver_.stop(); // reaps it; running() is false from here on
    for (std::size_t i = 0; i < workers_.size(); ++i)
        if (workers_[i]->st != worker_process::state::dead) on_exit(*workers_[i], SIGKILL);
}

// Exit reports that start_worker read off the forkserver socket while it waited
// for a spawn reply (two workers dying together, say). They are no longer in the
// socket, so nothing would wake the loop for them: handle them here. on_exit may
// start a worker and stash more, hence the loop.
OFFLOAD_DECL void process_pool_core::drain_early_exits() noexcept {
    auto& early = forkserver_.early_exits();
    while (!early.empty()) {
        auto [pid, status] = early.front();
        early.erase(early.begin());
        if (auto* w = find_pid(pid)) on_exit(*w, status);
    }
}

// Asks an idle worker to exit; a replacement starts when it has (unless closed).
OFFLOAD_DECL void process_pool_core::retire(worker_process& w) noexcept {
    w.st = worker_process::state::retiring;
    if (loop_) loop_->remove_timer(&w); // an idle trim: the worker is leaving anyway
    try {
        byte_writer none(w.to_worker);
        mailbox_send(w.to_worker, msg_kind::exit, none, w.sock, -1);
    } catch (...) {
        kill_worker(w);
    }
}

OFFLOAD_DECL void process_pool_core::kill_worker(worker_process& w) noexcept {
    if (w.st == worker_process::state::dead || w.killed) return;
    w.killed = true;
    if (w.call) counters_.kills.fetch_add(1, std::memory_order_relaxed);
    ::kill(w.pid, SIGKILL);
}

OFFLOAD_DECL worker_process* process_pool_core::find_pid(pid_t pid) noexcept {
    for (auto& s : workers_)
        if (s->pid == pid && s->st != worker_process::state::dead) return s.get();
    return nullptr;
}

OFFLOAD_DECL bool process_pool_core::debug_fork_warning() const {
    if (auto* l = loop_core::current(); l && l->get_debug()) return true;
    return debug_env_enabled();
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
