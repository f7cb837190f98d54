// offload/detail/process_pool_impl.hpp — out-of-line bodies of process_pool:
// starting and replacing workers, dispatching calls, reading results and
// deaths on the loop, shutdown.
#pragma once

#include <offload/process_pool.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace offload {
namespace detail {

inline int pidfd_open(pid_t pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// True in a process that process_pool's spawn method started (read before main
// runs, so a program that forgot worker_main fails fast instead of re-running
// itself: process_pool refuses to start there).
inline bool detect_spawned_worker() noexcept {
    std::ifstream f("/proc/self/cmdline", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::size_t first = all.find('\0');
    return first != std::string::npos && all.compare(first + 1, std::strlen(spawn_flag), spawn_flag) == 0;
}
inline const bool in_spawned_worker = detect_spawned_worker();

/// The parent's view of one worker process.
class proc_worker_slot final : public timer_node {
public:
    enum class state { starting, idle, busy, retiring, dead };

    proc_worker_slot(process_pool* p, std::size_t i) : pool(p), index(i) {}
    ~proc_worker_slot() { close_fds(); }

    void fire() override {
        if (st == state::idle) { // idle long enough: give big mailbox pages back
            trim();
            return;
        }
        // task_timeout, or the start deadline
        if (call) call->end = proc_call::fate::timed_out;
        pool->kill_worker(*this);
    }

    // Both mailboxes are quiet while the worker is idle (it has read its call
    // and the parent has read its result), so the parent may drop their pages.
    void trim() noexcept {
        to_worker.release_payload(held, keep);
        to_parent.release_payload(held, keep);
        held = 0;
    }

    void close_fds() noexcept {
        for (int* fd : {&fd_to_worker, &fd_to_parent, &sock, &pidfd})
            if (*fd >= 0) ::close(std::exchange(*fd, -1));
    }

    process_pool* pool;
    std::size_t index;
    pid_t pid = -1;
    int pidfd = -1;
    int fd_to_worker = -1;
    int fd_to_parent = -1;
    int sock = -1;
    mailbox to_worker, to_parent;
    std::uint32_t seen = 0;
    state st = state::starting;
    proc_call* call = nullptr;
    std::size_t tasks = 0;
    bool killed = false; // we sent SIGKILL: its death is expected
    bool hello = false;
    clock::time_point dispatched{};
    event_loop* el = nullptr; // where its timer and pidfd are registered
    std::size_t keep = 0;          // mailbox bytes that stay mapped (shared_memory_threshold)
    std::size_t held = 0;          // the largest message since the last trim, if above `keep`
    clock::time_point big_at{};    // when that message was sent or read
};

inline proc_call::~proc_call() {
    if (pool) pool->detach_call(this);
}

inline void proc_call::cancel() noexcept { pool->cancel_call(this); }

} // namespace detail

inline void process_pool::worker_main(int argc, char** argv) {
    if (!detail::is_spawned_worker(argc, argv)) return;
    pid_t parent = static_cast<pid_t>(std::atol(argv[2]));
    detail::run_worker({detail::spawn_first_fd, detail::spawn_first_fd + 1, detail::spawn_first_fd + 2,
                        detail::spawn_first_fd + 3},
                       parent);
}

inline process_pool::process_pool(process_pool_options opts) : opts_(std::move(opts)) {
    if (detail::in_spawned_worker)
        throw std::logic_error(
            "offload: this process was started as a process_pool worker (spawn) but main() did not call "
            "offload::process_pool::worker_main(argc, argv) first; add that call at the top of main");
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
        if (opts_.start == start_method::forkserver) std::tie(server_pid_, server_sock_) = detail::start_forkserver();
        for (std::size_t i = 0; i < nworkers_; ++i) {
            slots_.push_back(std::make_unique<detail::proc_worker_slot>(this, i));
            start_worker(i);
        }
        if (auto* l = event_loop::current_or_null()) bind(*l);
    } catch (...) {
        in_destructor_ = true;
        shutdown(true, true);
        throw;
    }
}

inline bool process_pool::debug_fork_warning() const {
    if (auto* l = event_loop::current_or_null(); l && l->get_debug()) return true;
    const char* d = std::getenv("OFFLOAD_DEBUG");
    return d && *d && std::strcmp(d, "0") != 0;
}

inline process_pool::~process_pool() {
    in_destructor_ = true;
    shutdown(true, true);
}

inline void process_pool::start_worker(std::size_t index) {
    auto& w = *slots_[index];
    w.close_fds();
    w.st = detail::proc_worker_slot::state::starting;
    w.call = nullptr;
    w.tasks = 0;
    w.killed = false;
    w.hello = false;
    w.seen = 0;
    w.held = 0;
    w.keep = opts_.shared_memory_threshold;
    w.fd_to_worker = detail::mailbox::create_fd(opts_.shared_memory_threshold, "offload-call");
    w.fd_to_parent = detail::mailbox::create_fd(opts_.shared_memory_threshold, "offload-result");
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        throw std::system_error(errno, std::generic_category(), "offload: socketpair for a worker");
    w.sock = sv[0];
    w.to_worker.attach(w.fd_to_worker);
    w.to_parent.attach(w.fd_to_parent);
    w.to_parent.hdr()->sleeping.store(1, std::memory_order_relaxed); // the loop waits in epoll: always wake it
    // The init message is in place before the worker starts; it reads it first.
    detail::worker_init init;
    if (opts_.limits.cpu_seconds) init.cpu_seconds = opts_.limits.cpu_seconds->count();
    if (opts_.limits.address_space) init.address_space = *opts_.limits.address_space;
    if (opts_.initializer) init.initializer = detail::make_fn_ref(reinterpret_cast<const void*>(opts_.initializer));
    detail::byte_writer iw(w.to_worker);
    detail::encode_init(iw, init);
    detail::mailbox_send(w.to_worker, detail::msg_kind::init, iw, -1, -1);
    detail::worker_fds f{w.fd_to_worker, w.fd_to_parent, eventfd_, sv[1]};
    try {
        switch (opts_.start) {
        case start_method::fork:
            if (debug_fork_warning()) detail::warn_threaded_fork();
            w.pid = detail::start_forked(f);
            break;
        case start_method::spawn: w.pid = detail::start_spawned(f); break;
        case start_method::forkserver: {
            detail::forkserver_msg m{detail::forkserver_msg::spawn, 0, 0};
            int fds[4] = {f.to_worker, f.to_parent, f.event, f.sock};
            detail::send_with_fds(server_sock_, &m, sizeof m, fds, 4);
            for (;;) { // the reply; exit reports may come first
                detail::forkserver_msg r;
                std::vector<int> none;
                if (detail::recv_with_fds(server_sock_, &r, sizeof r, none, 0) == 0)
                    throw broken_executor("offload: the forkserver exited; the pool cannot start workers");
                if (r.type == detail::forkserver_msg::exited) {
                    early_exits_.emplace_back(r.pid, r.status);
                    continue;
                }
                if (r.type != detail::forkserver_msg::spawned)
                    throw std::system_error(r.status, std::generic_category(), "offload: forkserver could not fork");
                w.pid = r.pid;
                break;
            }
            break;
        }
        }
    } catch (...) {
        ::close(sv[1]);
        throw;
    }
    ::close(sv[1]);
    if (opts_.start != start_method::forkserver) {
        w.pidfd = detail::pidfd_open(w.pid);
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
inline void process_pool::watch(detail::proc_worker_slot& w) {
    w.el = loop_;
    if (w.pidfd >= 0) {
        auto* wp = &w;
        loop_->add_reader(w.pidfd, [this, wp] { reap(*wp); });
    }
    if (!w.hello) {
        w.deadline = detail::clock::now() + std::chrono::seconds(10);
        loop_->add_timer(&w);
    } else if (w.st == detail::proc_worker_slot::state::idle && w.held) { // the idle trim a gone loop dropped
        w.deadline = w.big_at + mailbox_hold;
        loop_->add_timer(&w);
    }
}

// A child worker (fork, spawn) that exited: collect its status (no zombie).
inline void process_pool::reap(detail::proc_worker_slot& w) noexcept {
    if (w.pidfd < 0 || w.st == detail::proc_worker_slot::state::dead) return;
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(w.pidfd), &si, WEXITED | WNOHANG) < 0 ||
        si.si_pid == 0)
        return;
    on_exit(w, si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f));
}

inline void process_pool::bind(event_loop& loop) {
    if (loop_ == &loop) return;
    if (loop_)
        throw std::logic_error("offload: a process_pool serves one event loop at a time and this one is bound to "
                               "another loop (thread); give each loop its own pool");
    loop_ = &loop;
    loop.add_observer(this);
    loop.add_reader(eventfd_, [this] { on_event(); });
    if (server_sock_ >= 0) loop.add_reader(server_sock_, [this] { on_server(); });
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        auto& w = *slots_[i];
        if (w.st != detail::proc_worker_slot::state::dead) watch(w);
    }
    drain_early_exits(); // reports the forkserver sent while nobody listened
    on_event();          // messages that arrived before the loop existed
}

inline void process_pool::unbind() noexcept {
    if (!loop_) return;
    event_loop::remove_observer(this);
    loop_->clear_io(eventfd_, false);
    if (server_sock_ >= 0) loop_->clear_io(server_sock_, false);
    for (auto& s : slots_) {
        if (s->pidfd >= 0) loop_->clear_io(s->pidfd, false);
        loop_->remove_timer(s.get());
        s->el = nullptr;
    }
    loop_ = nullptr;
}

inline void process_pool::loop_closing() noexcept {
    // The loop's tasks are gone (their calls detached); keep the workers for the next loop.
    event_loop* l = loop_;
    loop_ = nullptr;
    for (auto& s : slots_) {
        if (s->pidfd >= 0) l->clear_io(s->pidfd, false);
        l->remove_timer(s.get());
        s->el = nullptr;
    }
    l->clear_io(eventfd_, false);
    if (server_sock_ >= 0) l->clear_io(server_sock_, false);
}

inline detail::proc_worker_slot* process_pool::find_pid(pid_t pid) noexcept {
    for (auto& s : slots_)
        if (s->pid == pid && s->st != detail::proc_worker_slot::state::dead) return s.get();
    return nullptr;
}

inline std::exception_ptr process_pool::closed_error() const {
    return std::make_exception_ptr(executor_closed(
        "offload::executor_closed: the process pool was shut down and takes no new calls; submit before "
        "shutdown() or create a new pool"));
}

inline void process_pool::submit(detail::proc_call* c) {
    if (broken_) throw broken_executor(broken_why_);
    if (closed_.load(std::memory_order_acquire)) std::rethrow_exception(closed_error());
    bind(*static_cast<event_loop*>(c->loop));
    c->pool = this;
    c->ph = detail::proc_call::phase::queued;
    pending_.push_back(c);
    submitted_.fetch_add(1, std::memory_order_relaxed);
    std::size_t q = queued_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (q > max_queued_.load(std::memory_order_relaxed)) max_queued_.store(q, std::memory_order_relaxed);
    c->enqueued = detail::clock::now();
    dispatch();
}

inline void process_pool::dispatch() noexcept {
    for (auto& s : slots_) {
        if (pending_.empty()) return;
        auto& w = *s;
        if (w.st != detail::proc_worker_slot::state::idle) continue;
        detail::proc_call* c = pending_.pop_front();
        queued_.fetch_sub(1, std::memory_order_relaxed);
        detail::byte_writer req(w.to_worker); // encoded in place, where the worker reads it
        try {
            c->encode_request(req);
            detail::mailbox_send(w.to_worker, detail::msg_kind::call, req, w.sock, -1);
        } catch (...) {
            c->error = std::current_exception();
            failed_.fetch_add(1, std::memory_order_relaxed);
            resolve(c);
            continue;
        }
        bytes_sent_.fetch_add(req.size(), std::memory_order_relaxed);
        if (loop_) loop_->remove_timer(&w); // an idle trim that had not come due
        note_size(w, req.size());
        queue_wait_.record(static_cast<std::uint64_t>((detail::clock::now() - c->enqueued).count()));
        w.st = detail::proc_worker_slot::state::busy;
        w.call = c;
        w.dispatched = detail::clock::now();
        c->worker = &w;
        c->ph = detail::proc_call::phase::running;
        busy_.fetch_add(1, std::memory_order_relaxed);
        if (opts_.task_timeout && loop_) {
            w.deadline = w.dispatched + std::chrono::duration_cast<detail::clock::duration>(*opts_.task_timeout);
            loop_->add_timer(&w);
        }
    }
}

inline void process_pool::resolve(detail::proc_call* c) noexcept {
    c->ph = detail::proc_call::phase::done;
    c->worker = nullptr;
    c->wake();
}

inline void process_pool::on_event() noexcept {
    std::uint64_t v;
    while (::read(eventfd_, &v, sizeof v) > 0) {
    }
    for (auto& s : slots_) {
        auto& w = *s;
        if (w.st == detail::proc_worker_slot::state::dead || w.fd_to_parent < 0) continue;
        if (w.to_parent.hdr()->seq.load(std::memory_order_acquire) != w.seen) on_message(w);
    }
}

inline void process_pool::on_message(detail::proc_worker_slot& w) noexcept {
    w.seen = w.to_parent.hdr()->seq.load(std::memory_order_acquire);
    try {
        w.to_parent.refresh();
    } catch (...) {
        kill_worker(w);
        return;
    }
    auto kind = static_cast<detail::msg_kind>(w.to_parent.hdr()->kind);
    if (kind == detail::msg_kind::hello) {
        w.hello = true;
        start_kills_ = 0;
        if (loop_) loop_->remove_timer(&w);
        if (w.st == detail::proc_worker_slot::state::starting) w.st = detail::proc_worker_slot::state::idle;
        if (closed_.load() && w.st == detail::proc_worker_slot::state::idle) retire(w);
        dispatch();
        return;
    }
    if (kind != detail::msg_kind::result || w.st != detail::proc_worker_slot::state::busy) return;
    if (loop_) loop_->remove_timer(&w);
    run_time_.record(static_cast<std::uint64_t>((detail::clock::now() - w.dispatched).count()));
    std::size_t size = w.to_parent.hdr()->size;
    bytes_received_.fetch_add(size, std::memory_order_relaxed);
    busy_.fetch_sub(1, std::memory_order_relaxed);
    detail::proc_call* c = std::exchange(w.call, nullptr);
    w.st = detail::proc_worker_slot::state::idle;
    ++w.tasks;
    if (w.killed) w.st = detail::proc_worker_slot::state::retiring; // dying: never dispatch to it
    if (c && c->end == detail::proc_call::fate::cancelled) {
        // Cancelled while its result was on the way: the cancellation stands.
        cancelled_.fetch_add(1, std::memory_order_relaxed);
        c->cancelled = true;
        resolve(c);
    } else if (c) {
        std::vector<int> fds;
        bool ok = false;
        try {
            fds = detail::mailbox_take_fds(w.to_parent, w.sock);
            detail::byte_reader r(std::span<const std::byte>(w.to_parent.payload(), size), fds);
            if (codec<std::uint8_t>::decode(r) == 0) {
                c->decode_result(r); // straight out of shared memory into the result object
                ok = true;
            } else {
                detail::throw_remote_exception(r);
            }
        } catch (...) {
            c->error = std::current_exception();
        }
        (ok ? completed_ : failed_).fetch_add(1, std::memory_order_relaxed);
        for (int fd : fds) ::close(fd);
        resolve(c);
    }
    note_size(w, size);
    if (w.st != detail::proc_worker_slot::state::idle) return;
    if (opts_.max_tasks_per_child && w.tasks >= opts_.max_tasks_per_child) {
        retire(w); // replaced when it has exited
        return;
    }
    if (w.held && detail::clock::now() - w.big_at >= mailbox_hold) w.trim(); // the big calls have stopped
    dispatch();
    if (w.st != detail::proc_worker_slot::state::idle) return;
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
inline void process_pool::note_size(detail::proc_worker_slot& w, std::size_t bytes) noexcept {
    if (bytes <= w.keep) return;
    w.held = std::max(w.held, bytes);
    w.big_at = detail::clock::now();
}

// Asks an idle worker to exit; a replacement starts when it has (unless closed).
inline void process_pool::retire(detail::proc_worker_slot& w) noexcept {
    w.st = detail::proc_worker_slot::state::retiring;
    if (loop_) loop_->remove_timer(&w); // an idle trim: the worker is leaving anyway
    try {
        detail::byte_writer none(w.to_worker);
        detail::mailbox_send(w.to_worker, detail::msg_kind::exit, none, w.sock, -1);
    } catch (...) {
        kill_worker(w);
    }
}

inline void process_pool::kill_worker(detail::proc_worker_slot& w) noexcept {
    if (w.st == detail::proc_worker_slot::state::dead || w.killed) return;
    w.killed = true;
    if (w.call) kills_.fetch_add(1, std::memory_order_relaxed);
    ::kill(w.pid, SIGKILL);
}

inline void process_pool::on_exit(detail::proc_worker_slot& w, int status) noexcept {
    if (w.st == detail::proc_worker_slot::state::dead) return;
    auto was = w.st;
    w.st = detail::proc_worker_slot::state::dead;
    if (loop_) {
        if (w.pidfd >= 0) loop_->clear_io(w.pidfd, false);
        loop_->remove_timer(&w);
    }
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    bool expected = was == detail::proc_worker_slot::state::retiring || w.killed;
    if (detail::proc_call* c = std::exchange(w.call, nullptr)) {
        busy_.fetch_sub(1, std::memory_order_relaxed);
        if (c->end == detail::proc_call::fate::cancelled) {
            cancelled_.fetch_add(1, std::memory_order_relaxed);
            c->cancelled = true;
        } else if (c->end == detail::proc_call::fate::timed_out) {
            cancelled_.fetch_add(1, std::memory_order_relaxed);
            c->error = std::make_exception_ptr(timeout_error(fmt::format(
                "offload::timeout_error: a process-pool call ran past its timeout; its worker (pid {}) was killed "
                "and replaced",
                w.pid)));
        } else {
            crashes_.fetch_add(1, std::memory_order_relaxed);
            failed_.fetch_add(1, std::memory_order_relaxed);
            std::string how = sig ? fmt::format("was killed by signal {} ({})", sig, ::strsignal(sig))
                                  : fmt::format("exited with status {}", code);
            c->error = std::make_exception_ptr(worker_crashed(
                fmt::format("offload::worker_crashed: the worker process (pid {}) running this call {}; only this "
                            "call failed and the worker was replaced",
                            w.pid, how),
                sig, code, w.pid));
        }
        resolve(c);
    } else if (!expected && was != detail::proc_worker_slot::state::starting) {
        crashes_.fetch_add(1, std::memory_order_relaxed);
    }
    pid_t old = w.pid;
    w.close_fds();
    // SIGKILL from someone else (the OOM killer, an operator) before the worker
    // was ready says nothing about the next one: replace it, a few times in a row.
    const bool killed_while_starting = !w.hello && !w.killed && sig == SIGKILL && ++start_kills_ <= 3;
    if (killed_while_starting) crashes_.fetch_add(1, std::memory_order_relaxed);
    if (!w.hello && !killed_while_starting && !in_destructor_ && !closed_.load()) {
        // It never became ready (the initializer threw, a spawned program did not
        // call worker_main, a crash while starting): restarting would fail the same way.
        std::string why =
            code == 72 ? std::string("offload::broken_executor: the process pool's initializer threw in a new "
                                     "worker (see its message on stderr); the pool is broken")
            : w.killed
                ? fmt::format("offload::broken_executor: worker pid {} did not become ready within 10 s. With "
                              "start_method::spawn, call offload::process_pool::worker_main(argc, argv) first thing "
                              "in main",
                              old)
                : fmt::format("offload::broken_executor: worker pid {} exited before it was ready ({}). With "
                              "start_method::spawn, call offload::process_pool::worker_main(argc, argv) first thing "
                              "in main",
                              old, sig ? fmt::format("signal {}", sig) : fmt::format("status {}", code));
        break_pool(why);
        return;
    }
    if (closed_.load() || broken_) {
        check_all_exited();
        return;
    }
    if (!expected && opts_.on_crash == crash_policy::break_pool) {
        break_pool(fmt::format("offload::broken_executor: worker pid {} died ({}) and the pool's crash_policy is "
                               "break_pool; create a new pool",
                               old, sig ? fmt::format("signal {}", sig) : fmt::format("status {}", code)));
        return;
    }
    try {
        start_worker(w.index);
        respawns_.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::exception& e) {
        break_pool(fmt::format("offload::broken_executor: could not replace a dead worker: {}", e.what()));
        return;
    }
    dispatch();
}

inline void process_pool::on_server() noexcept {
    for (;;) {
        drain_early_exits();
        detail::forkserver_msg m;
        ssize_t n = ::recv(server_sock_, &m, sizeof m, MSG_DONTWAIT);
        if (n == 0) {
            if (loop_) loop_->clear_io(server_sock_, false);
            if (!closed_.load()) break_pool("offload::broken_executor: the pool's forkserver died");
            return;
        }
        if (n != static_cast<ssize_t>(sizeof m)) return;
        if (m.type == detail::forkserver_msg::exited)
            if (auto* w = find_pid(m.pid)) on_exit(*w, m.status);
    }
}

// Exit reports that start_worker read off the forkserver socket while it waited
// for a spawn reply (two workers dying together, say). They are no longer in the
// socket, so nothing would wake the loop for them: handle them here. on_exit may
// start a worker and stash more, hence the loop.
inline void process_pool::drain_early_exits() noexcept {
    while (!early_exits_.empty()) {
        auto [pid, status] = early_exits_.front();
        early_exits_.erase(early_exits_.begin());
        if (auto* w = find_pid(pid)) on_exit(*w, status);
    }
}

inline void process_pool::fail_pending(const std::exception_ptr& e) noexcept {
    while (detail::proc_call* c = pending_.pop_front()) {
        queued_.fetch_sub(1, std::memory_order_relaxed);
        cancelled_.fetch_add(1, std::memory_order_relaxed);
        c->error = e;
        resolve(c);
    }
}

inline void process_pool::break_pool(const std::string& why) noexcept {
    if (broken_) return;
    broken_ = true;
    broken_why_ = why;
    fail_pending(std::make_exception_ptr(broken_executor(why)));
    for (auto& s : slots_) {
        if (s->call) {
            s->call->error = std::make_exception_ptr(broken_executor(why));
            busy_.fetch_sub(1, std::memory_order_relaxed);
            failed_.fetch_add(1, std::memory_order_relaxed);
            resolve(std::exchange(s->call, nullptr));
        }
        kill_worker(*s);
    }
    check_all_exited();
}

inline void process_pool::cancel_call(detail::proc_call* c) noexcept {
    if (c->ph == detail::proc_call::phase::queued) {
        detail::intrusive_list<detail::proc_call>::erase(c);
        queued_.fetch_sub(1, std::memory_order_relaxed);
        cancelled_.fetch_add(1, std::memory_order_relaxed);
        c->ph = detail::proc_call::phase::done;
        c->wake_cancelled(); // it never ran, and never will
    } else if (c->ph == detail::proc_call::phase::running && c->worker) {
        // Free the core for real: kill the worker; the await resolves once it is reaped.
        c->end = detail::proc_call::fate::cancelled;
        kill_worker(*c->worker);
    }
}

inline void process_pool::detach_call(detail::proc_call* c) noexcept {
    if (c->ph == detail::proc_call::phase::queued) {
        detail::intrusive_list<detail::proc_call>::erase(c);
        queued_.fetch_sub(1, std::memory_order_relaxed);
        cancelled_.fetch_add(1, std::memory_order_relaxed);
    } else if (c->ph == detail::proc_call::phase::running && c->worker) {
        auto& w = *c->worker;
        w.call = nullptr; // nobody waits for it any more: stop it
        busy_.fetch_sub(1, std::memory_order_relaxed);
        cancelled_.fetch_add(1, std::memory_order_relaxed);
        kill_worker(w);
        w.st = detail::proc_worker_slot::state::retiring;
    }
    c->ph = detail::proc_call::phase::done;
    c->pool = nullptr;
}

inline void process_pool::begin_shutdown(bool cancel_pending) noexcept {
    if (cancel_pending) fail_pending(closed_error());
    for (auto& s : slots_) {
        if (s->st == detail::proc_worker_slot::state::idle && pending_.empty()) retire(*s);
        if (s->st == detail::proc_worker_slot::state::starting && !loop_) kill_worker(*s);
    }
    check_all_exited();
}

inline void process_pool::check_all_exited() noexcept {
    if (!closed_.load()) return;
    for (auto& s : slots_)
        if (s->st != detail::proc_worker_slot::state::dead) return;
    {
        std::lock_guard lk(mu_);
        all_exited_ = true;
    }
    exited_cv_.notify_all();
}

// Drives the pool without the loop (shutdown on the loop thread, the
// destructor): waits for results and deaths with poll(); past `deadline`
// it kills whatever still runs.
inline void process_pool::drive_blocking(std::chrono::steady_clock::time_point deadline) noexcept {
    bool killed_all = false;
    auto hard_stop = deadline + std::chrono::seconds(5);
    for (;;) {
        bool alive = false;
        for (auto& s : slots_) alive = alive || s->st != detail::proc_worker_slot::state::dead;
        if (!alive) return;
        auto now = std::chrono::steady_clock::now();
        if (!killed_all && now >= deadline) {
            for (auto& s : slots_) kill_worker(*s);
            killed_all = true;
        }
        if (now >= hard_stop) return; // unkillable (D state?): give up rather than hang
        std::vector<pollfd> pf;
        pf.push_back({eventfd_, POLLIN, 0});
        if (server_sock_ >= 0) pf.push_back({server_sock_, POLLIN, 0});
        for (auto& s : slots_)
            if (s->pidfd >= 0 && s->st != detail::proc_worker_slot::state::dead) pf.push_back({s->pidfd, POLLIN, 0});
        auto wait = std::min<std::chrono::steady_clock::duration>(std::chrono::milliseconds(50),
                                                                  (killed_all ? hard_stop : deadline) - now);
        ::poll(pf.data(), pf.size(),
               static_cast<int>(std::max<long long>(1, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count())));
        on_event();
        if (server_sock_ >= 0) on_server();
        for (auto& s : slots_) reap(*s);
        // Workers that became idle (or ready) while we drove: ask them to leave.
        for (auto& s : slots_)
            if ((s->st == detail::proc_worker_slot::state::idle) && pending_.empty()) retire(*s);
    }
}

inline void process_pool::shutdown(bool wait, bool cancel_pending) {
    event_loop* bound;
    {
        std::lock_guard lk(mu_);
        closed_.store(true);
        bound = loop_;
    }
    bool on_loop_thread = bound && event_loop::current_or_null() == bound;
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
        for (auto& s : slots_) s->close_fds();
        if (server_sock_ >= 0) {
            ::close(std::exchange(server_sock_, -1)); // the forkserver sees EOF and exits
            ::waitpid(server_pid_, nullptr, 0);
        }
        if (eventfd_ >= 0) ::close(std::exchange(eventfd_, -1));
    }
}

inline executor_stats process_pool::stats() const {
    executor_stats s;
    s.workers = nworkers_;
    s.busy = busy_.load(std::memory_order_relaxed);
    s.queued = queued_.load(std::memory_order_relaxed);
    s.max_queued = max_queued_.load(std::memory_order_relaxed);
    s.submitted = submitted_.load(std::memory_order_relaxed);
    s.completed = completed_.load(std::memory_order_relaxed);
    s.failed = failed_.load(std::memory_order_relaxed);
    s.cancelled = cancelled_.load(std::memory_order_relaxed);
    s.crashes = crashes_.load(std::memory_order_relaxed);
    s.respawns = respawns_.load(std::memory_order_relaxed);
    s.kills = kills_.load(std::memory_order_relaxed);
    s.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
    s.bytes_received = bytes_received_.load(std::memory_order_relaxed);
    s.queue_wait = detail::percentiles_of(queue_wait_);
    s.run_time = detail::percentiles_of(run_time_);
    return s;
}

inline std::vector<pid_t> process_pool::worker_pids() const {
    std::vector<pid_t> p;
    for (auto& s : slots_)
        if (s->st != detail::proc_worker_slot::state::dead) p.push_back(s->pid);
    return p;
}

} // namespace offload
