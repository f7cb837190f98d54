// offload/detail/process/pool_core.hpp — the machinery of a process_pool:
// starting and replacing workers, dispatching calls to idle workers, reading
// results and deaths on the event loop, timeouts and cancellation (by
// killing the worker), and shutdown. <offload/process_pool.hpp> is its
// public face.
//
// Each worker has a shared-memory mailbox per direction (no socket copies;
// shared_buffer crosses as a handle), an eventfd that wakes the parent's
// loop, and a pidfd (or the forkserver's report) that tells the loop it
// died. All of it is read by the event loop that uses the pool: no helper
// thread per call.
#pragma once

#include <offload/available_cpus.hpp>
#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/config.hpp>
#include <offload/detail/base/env.hpp>
#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/process/call.hpp>
#include <offload/detail/process/exit_codes.hpp>
#include <offload/detail/process/forkserver.hpp>
#include <offload/detail/process/mailbox.hpp>
#include <offload/detail/process/spawn.hpp>
#include <offload/detail/process/wire.hpp>
#include <offload/detail/process/worker_process.hpp>
#include <offload/errors.hpp>
#include <offload/executor.hpp>
#include <offload/process_pool_options.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace offload::detail {

inline int pidfd_open(pid_t pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

class process_pool_core final : private loop_observer, private process_call_owner, private worker_timer_owner {
public:
    explicit process_pool_core(process_pool_options opts);
    process_pool_core(const process_pool_core&) = delete;
    process_pool_core& operator=(const process_pool_core&) = delete;
    /// Cancels queued calls (executor_closed), gives running ones a grace
    /// period, then kills whatever is left; never hangs.
    ~process_pool_core();

    void shutdown(bool wait, bool cancel_pending);
    executor_stats stats() const noexcept { return counters_.snapshot(nworkers_); }
    std::vector<pid_t> worker_pids() const;
    std::size_t workers() const noexcept { return nworkers_; }

    /// Queues `c` (loop thread); throws broken_executor or executor_closed.
    void submit(process_call* c);

private:
    static constexpr std::chrono::seconds mailbox_hold{1};   // big mailbox pages outlive their last use by this
    static constexpr std::chrono::seconds start_deadline{10}; // a worker that is not ready by then is killed
    static constexpr unsigned max_start_kills = 3;            // foreign SIGKILLs while starting, in a row

    // loop_observer
    void loop_closing() noexcept override;
    bool expects_io() const noexcept override { return counters_.busy.load(std::memory_order_relaxed) > 0; }
    // process_call_owner
    void cancel_call(process_call* c) noexcept override;
    void detach_call(process_call* c) noexcept override;
    // worker_timer_owner
    void worker_timer_fired(worker_process& w) noexcept override;

    void bind(loop_core& loop);
    void unbind() noexcept;
    void start_worker(std::size_t index);
    void watch(worker_process& w);
    void reap(worker_process& w) noexcept;
    void on_event() noexcept;
    void on_message(worker_process& w) noexcept;
    void on_exit(worker_process& w, int wait_status) noexcept;
    void resolve_orphaned_call(worker_process& w, process_call* c, int sig, int code) noexcept;
    static std::string startup_failure(const worker_process& w, pid_t pid, int sig, int code);
    static std::string describe_death(int sig, int code);
    void on_server() noexcept;
    void drain_early_exits() noexcept;
    void dispatch() noexcept;
    void resolve(process_call* c) noexcept;
    void fail_pending(const std::exception_ptr& e) noexcept;
    void break_pool(const std::string& why) noexcept;
    void kill_worker(worker_process& w) noexcept;
    void retire(worker_process& w) noexcept;
    void begin_shutdown(bool cancel_pending) noexcept;
    void check_all_exited() noexcept;
    void drive_blocking(std::chrono::steady_clock::time_point deadline) noexcept;
    void note_size(worker_process& w, std::size_t bytes) noexcept;
    worker_process* find_pid(pid_t pid) noexcept;
    std::exception_ptr closed_error() const;
    bool debug_fork_warning() const;

    process_pool_options opts_;
    std::size_t nworkers_ = 0;
    std::vector<std::unique_ptr<worker_process>> workers_;
    intrusive_list<process_call> pending_;
    loop_core* loop_ = nullptr;
    int eventfd_ = -1; // workers write it to wake the loop
    forkserver_client forkserver_;
    bool broken_ = false;
    unsigned start_kills_ = 0; // workers SIGKILLed before they were ready, in a row
    std::string broken_why_;
    bool in_destructor_ = false;

    mutable std::mutex mu_; // guards the cross-thread parts: closed_, all_exited_, and the condvar
    std::condition_variable exited_cv_;
    std::atomic<bool> closed_{false};
    bool all_exited_ = false;

    executor_counters counters_;
};

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void process_pool_core::worker_timer_fired(worker_process& w) noexcept {
    if (w.st == worker_process::state::idle) { // idle long enough: give big mailbox pages back
        w.trim();
        return;
    }
    // task_timeout, or the start deadline
    if (w.call) w.call->end = process_call::fate::timed_out;
    kill_worker(w);
}

OFFLOAD_DECL process_pool_core::process_pool_core(process_pool_options opts) : opts_(std::move(opts)) {
    if (started_as_spawned_worker())
        throw std::logic_error(
            "offload: this process was started as a process_pool worker (spawn) but main() did not call "
            "offload::process_pool_core::worker_main(argc, argv) first; add that call at the top of main");
    nworkers_ = opts_.workers ? opts_.workers : std::max<std::size_t>(1, available_cpus() - 1);
    if (nworkers_ > 1024)
        throw std::invalid_argument(fmt::format("offload: process_pool_options.workers = {} is not a sensible "
                                                "pool size; use 0 for available_cpus() - 1 or a number up to 1024",
                                                nworkers_));
    if (opts_.task_timeout && opts_.task_timeout->count() <= 0)
        throw std::invalid_argument("offload: process_pool_options.task_timeout must be positive (or unset)");
    if (opts_.limits.cpu_seconds && opts_.limits.cpu_seconds->count() <= 0)
        throw std::invalid_argument("offload: process_limits.cpu_seconds must be positive (or unset)");
    eventfd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (eventfd_ < 0) throw std::system_error(errno, std::generic_category(), "offload: eventfd");
    try {
        if (opts_.start == start_method::forkserver) forkserver_.start();
        for (std::size_t i = 0; i < nworkers_; ++i) {
            workers_.push_back(std::make_unique<worker_process>(static_cast<worker_timer_owner*>(this), i));
            start_worker(i);
        }
        if (auto* l = loop_core::current()) bind(*l);
    } catch (...) {
        in_destructor_ = true;
        shutdown(true, true);
        throw;
    }
}

OFFLOAD_DECL bool process_pool_core::debug_fork_warning() const {
    if (auto* l = loop_core::current(); l && l->get_debug()) return true;
    return debug_env_enabled();
}

OFFLOAD_DECL process_pool_core::~process_pool_core() {
    in_destructor_ = true;
    shutdown(true, true);
}

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

OFFLOAD_DECL void process_pool_core::bind(loop_core& loop) {
    if (loop_ == &loop) return;
    if (loop_)
        throw std::logic_error("offload: a process_pool serves one event loop at a time and this one is bound to "
                               "another loop (thread); give each loop its own pool");
    loop_ = &loop;
    loop.add_observer(this);
    loop.set_io(
        eventfd_, false, [this] { on_event(); }, false);
    if (forkserver_.running())
        loop.set_io(
            forkserver_.fd(), false, [this] { on_server(); }, false);
    for (auto& w : workers_)
        if (w->st != worker_process::state::dead) watch(*w);
    drain_early_exits(); // reports the forkserver sent while nobody listened
    on_event();          // messages that arrived before the loop existed
}

OFFLOAD_DECL void process_pool_core::unbind() noexcept {
    if (!loop_) return;
    loop_core::remove_observer(this);
    loop_->clear_io(eventfd_, false);
    if (forkserver_.running()) loop_->clear_io(forkserver_.fd(), false);
    for (auto& s : workers_) {
        if (s->pidfd >= 0) loop_->clear_io(s->pidfd, false);
        loop_->remove_timer(s.get());
        s->loop = nullptr;
    }
    loop_ = nullptr;
}

OFFLOAD_DECL void process_pool_core::loop_closing() noexcept {
    // The loop's tasks are gone (their calls detached); keep the workers for the next loop.
    loop_core* l = loop_;
    loop_ = nullptr;
    for (auto& s : workers_) {
        if (s->pidfd >= 0) l->clear_io(s->pidfd, false);
        l->remove_timer(s.get());
        s->loop = nullptr;
    }
    l->clear_io(eventfd_, false);
    if (forkserver_.running()) l->clear_io(forkserver_.fd(), false);
}

OFFLOAD_DECL worker_process* process_pool_core::find_pid(pid_t pid) noexcept {
    for (auto& s : workers_)
        if (s->pid == pid && s->st != worker_process::state::dead) return s.get();
    return nullptr;
}

OFFLOAD_DECL std::exception_ptr process_pool_core::closed_error() const {
    return std::make_exception_ptr(executor_closed(
        "offload::executor_closed: the process pool was shut down and takes no new calls; submit before "
        "shutdown() or create a new pool"));
}

OFFLOAD_DECL void process_pool_core::submit(process_call* c) {
    if (broken_) throw broken_executor(broken_why_);
    if (closed_.load(std::memory_order_acquire)) std::rethrow_exception(closed_error());
    bind(*c->loop);
    c->pool = this;
    c->ph = process_call::phase::queued;
    pending_.push_back(c);
    counters_.submitted.fetch_add(1, std::memory_order_relaxed);
    counters_.note_queued();
    c->enqueued = clock::now();
    dispatch();
}

OFFLOAD_DECL void process_pool_core::dispatch() noexcept {
    for (auto& s : workers_) {
        if (pending_.empty()) return;
        auto& w = *s;
        if (w.st != worker_process::state::idle) continue;
        process_call* c = pending_.pop_front();
        counters_.queued.fetch_sub(1, std::memory_order_relaxed);
        byte_writer req(w.to_worker); // encoded in place, where the worker reads it
        try {
            c->encode_request(req);
            mailbox_send(w.to_worker, msg_kind::call, req, w.sock, -1);
        } catch (...) {
            c->error = std::current_exception();
            counters_.failed.fetch_add(1, std::memory_order_relaxed);
            resolve(c);
            continue;
        }
        counters_.bytes_sent.fetch_add(req.size(), std::memory_order_relaxed);
        if (loop_) loop_->remove_timer(&w); // an idle trim that had not come due
        note_size(w, req.size());
        counters_.queue_wait.record(static_cast<std::uint64_t>((clock::now() - c->enqueued).count()));
        w.st = worker_process::state::busy;
        w.call = c;
        w.dispatched = clock::now();
        c->worker = &w;
        c->ph = process_call::phase::running;
        counters_.busy.fetch_add(1, std::memory_order_relaxed);
        if (opts_.task_timeout && loop_) {
            w.deadline = w.dispatched + std::chrono::duration_cast<clock::duration>(*opts_.task_timeout);
            loop_->add_timer(&w);
        }
    }
}

OFFLOAD_DECL void process_pool_core::resolve(process_call* c) noexcept {
    c->ph = process_call::phase::done;
    c->worker = nullptr;
    c->wake();
}

OFFLOAD_DECL void process_pool_core::on_event() noexcept {
    std::uint64_t v;
    while (::read(eventfd_, &v, sizeof v) > 0) {
    }
    for (auto& s : workers_) {
        auto& w = *s;
        if (w.st == worker_process::state::dead || w.fd_to_parent < 0) continue;
        if (w.to_parent.hdr()->seq.load(std::memory_order_acquire) != w.seen) on_message(w);
    }
}

OFFLOAD_DECL void process_pool_core::on_message(worker_process& w) noexcept {
    w.seen = w.to_parent.hdr()->seq.load(std::memory_order_acquire);
    try {
        w.to_parent.refresh();
    } catch (...) {
        kill_worker(w);
        return;
    }
    auto kind = static_cast<msg_kind>(w.to_parent.hdr()->kind);
    if (kind == msg_kind::hello) {
        w.hello = true;
        start_kills_ = 0;
        if (loop_) loop_->remove_timer(&w);
        if (w.st == worker_process::state::starting) w.st = worker_process::state::idle;
        if (closed_.load() && w.st == worker_process::state::idle) retire(w);
        dispatch();
        return;
    }
    if (kind != msg_kind::result || w.st != worker_process::state::busy) return;
    if (loop_) loop_->remove_timer(&w);
    counters_.run_time.record(static_cast<std::uint64_t>((clock::now() - w.dispatched).count()));
    std::size_t size = w.to_parent.hdr()->size;
    counters_.bytes_received.fetch_add(size, std::memory_order_relaxed);
    counters_.busy.fetch_sub(1, std::memory_order_relaxed);
    process_call* c = std::exchange(w.call, nullptr);
    w.st = worker_process::state::idle;
    ++w.tasks;
    if (w.killed) w.st = worker_process::state::retiring; // dying: never dispatch to it
    if (c && c->end == process_call::fate::cancelled) {
        // Cancelled while its result was on the way: the cancellation stands.
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
        c->cancelled = true;
        resolve(c);
    } else if (c) {
        std::vector<int> fds;
        bool ok = false;
        try {
            fds = mailbox_take_fds(w.to_parent, w.sock);
            byte_reader r(std::span<const std::byte>(w.to_parent.payload(), size), fds);
            if (codec<std::uint8_t>::decode(r) == 0) {
                c->decode_result(r); // straight out of shared memory into the result object
                ok = true;
            } else {
                throw_remote_exception(r);
            }
        } catch (...) {
            c->error = std::current_exception();
        }
        (ok ? counters_.completed : counters_.failed).fetch_add(1, std::memory_order_relaxed);
        for (int fd : fds) ::close(fd);
        resolve(c);
    }
    note_size(w, size);
    if (w.st != worker_process::state::idle) return;
    if (opts_.max_tasks_per_child && w.tasks >= opts_.max_tasks_per_child) {
        retire(w); // replaced when it has exited
        return;
    }
    if (w.held && clock::now() - w.big_at >= mailbox_hold) w.trim(); // the big calls have stopped
    dispatch();
    if (w.st != worker_process::state::idle) return;
    if (closed_.load() && pending_.empty()) {
        retire(w);
    } else if (w.held && loop_) { // idle with big pages: give them back unless calls come soon
        w.deadline = w.big_at + mailbox_hold;
        loop_->add_timer(&w);
    }
}

// Mailbox pages above shared_memory_threshold stay mapped while big messages
// keep coming (a cold 64 MiB write costs several times a warm one), and are
// given back once a worker has been idle, or has only seen small messages,
// for `mailbox_hold`.
OFFLOAD_DECL void process_pool_core::note_size(worker_process& w, std::size_t bytes) noexcept {
    if (bytes <= w.keep) return;
    w.held = std::max(w.held, bytes);
    w.big_at = clock::now();
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
    auto was = w.st;
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
    if (!w.hello && !killed_while_starting && !in_destructor_ && !closed_.load()) {
        // It never became ready (the initializer threw, a spawned program did not
        // call worker_main, a crash while starting): restarting would fail the same way.
        break_pool(startup_failure(w, old, sig, code));
        return;
    }
    if (closed_.load() || broken_) {
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
            return;
        }
        if (got < 0) return;
        if (m.type == forkserver_msg::exited)
            if (auto* w = find_pid(m.pid)) on_exit(*w, m.status);
    }
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

OFFLOAD_DECL void process_pool_core::fail_pending(const std::exception_ptr& e) noexcept {
    while (process_call* c = pending_.pop_front()) {
        counters_.queued.fetch_sub(1, std::memory_order_relaxed);
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
        c->error = e;
        resolve(c);
    }
}

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

OFFLOAD_DECL void process_pool_core::cancel_call(process_call* c) noexcept {
    if (c->ph == process_call::phase::queued) {
        intrusive_list<process_call>::erase(c);
        counters_.queued.fetch_sub(1, std::memory_order_relaxed);
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
        c->ph = process_call::phase::done;
        c->wake_cancelled(); // it never ran, and never will
    } else if (c->ph == process_call::phase::running && c->worker) {
        // Free the core for real: kill the worker; the await resolves once it is reaped.
        c->end = process_call::fate::cancelled;
        kill_worker(*c->worker);
    }
}

OFFLOAD_DECL void process_pool_core::detach_call(process_call* c) noexcept {
    if (c->ph == process_call::phase::queued) {
        intrusive_list<process_call>::erase(c);
        counters_.queued.fetch_sub(1, std::memory_order_relaxed);
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
    } else if (c->ph == process_call::phase::running && c->worker) {
        auto& w = *c->worker;
        w.call = nullptr; // nobody waits for it any more: stop it
        counters_.busy.fetch_sub(1, std::memory_order_relaxed);
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
        kill_worker(w);
        w.st = worker_process::state::retiring;
    }
    c->ph = process_call::phase::done;
    c->pool = nullptr;
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
    bool on_loop_thread = bound && loop_core::current() == bound;
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

OFFLOAD_DECL std::vector<pid_t> process_pool_core::worker_pids() const {
    std::vector<pid_t> p;
    for (auto& s : workers_)
        if (s->st != worker_process::state::dead) p.push_back(s->pid);
    return p;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
