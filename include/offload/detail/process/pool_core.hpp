// offload/detail/process/pool_core.hpp — the machinery of a process_pool:
// starting and replacing workers, dispatching calls to idle workers, reading
// results and deaths on the event loop, timeouts and cancellation (by
// killing the worker), and shutdown. This header has the class and the call
// side; pool_workers.hpp the worker lifecycle, pool_shutdown.hpp the end.
// <offload/process_pool.hpp> is its public face and includes all three.
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
    void forkserver_died() noexcept;
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

    mutable std::mutex mu_; // guards the cross-thread parts: closed_, loop_ (its writes), all_exited_, the condvar
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
    if (opts_.nice < 0 || opts_.nice > 19)
        throw std::invalid_argument(fmt::format("offload: process_pool_options.nice = {} is out of range; use 0 (the "
                                                "parent's priority) to 19 (the lowest): workers can only lower "
                                                "their priority (raising it needs CAP_SYS_NICE)",
                                                opts_.nice));
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

OFFLOAD_DECL process_pool_core::~process_pool_core() {
    in_destructor_ = true;
    shutdown(true, true);
}

OFFLOAD_DECL void process_pool_core::bind(loop_core& loop) {
    if (loop_ == &loop) return;
    {
        // Under mu_, as shutdown() reads loop_ from any thread: a shutdown that
        // found no loop runs on its own thread, so no loop may take the pool after it.
        std::lock_guard lk(mu_);
        if (loop_)
            throw std::logic_error("offload: a process_pool serves one event loop at a time and this one is bound to "
                                   "another loop (thread); give each loop its own pool");
        if (closed_.load()) std::rethrow_exception(closed_error());
        loop_ = &loop;
    }
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
    std::lock_guard lk(mu_);
    loop_ = nullptr;
}

OFFLOAD_DECL void process_pool_core::loop_closing() noexcept {
    // The loop's tasks are gone (their calls detached); keep the workers for the next loop.
    loop_core* l = loop_;
    {
        std::lock_guard lk(mu_);
        loop_ = nullptr;
    }
    for (auto& s : workers_) {
        if (s->pidfd >= 0) l->clear_io(s->pidfd, false);
        l->remove_timer(s.get());
        s->loop = nullptr;
    }
    l->clear_io(eventfd_, false);
    if (forkserver_.running()) l->clear_io(forkserver_.fd(), false);
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
        dispatch();
        // Ready after shutdown() (a replacement while queued calls drain): it leaves once nothing is queued.
        if (closed_.load() && w.st == worker_process::state::idle && pending_.empty()) retire(w);
        return;
    }
    if (kind != msg_kind::result || w.st != worker_process::state::busy) return;
    if (loop_) loop_->remove_timer(&w);
    counters_.run_time.record(static_cast<std::uint64_t>((clock::now() - w.dispatched).count()));
    std::size_t size = w.to_parent.hdr()->size;
    counters_.bytes_received.fetch_add(size, std::memory_order_relaxed);
    process_call* c = std::exchange(w.call, nullptr);
    // No call: break_pool already failed it, and took it off the busy count.
    if (c) counters_.busy.fetch_sub(1, std::memory_order_relaxed);
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

OFFLOAD_DECL void process_pool_core::fail_pending(const std::exception_ptr& e) noexcept {
    while (process_call* c = pending_.pop_front()) {
        counters_.queued.fetch_sub(1, std::memory_order_relaxed);
        counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
        c->error = e;
        resolve(c);
    }
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

OFFLOAD_DECL std::vector<pid_t> process_pool_core::worker_pids() const {
    std::vector<pid_t> p;
    for (auto& s : workers_)
        if (s->st != worker_process::state::dead) p.push_back(s->pid);
    return p;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
