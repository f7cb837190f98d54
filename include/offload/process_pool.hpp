// offload/process_pool.hpp — process_pool: worker processes for CPU-heavy
// calls, with the things Python's ProcessPoolExecutor cannot do: a dead
// worker fails only its own call and is replaced; a timed-out or cancelled
// call kills its worker, so the core is really freed; fork, spawn and
// forkserver start methods; typed arguments checked at compile time.
//
// Each worker has a shared-memory mailbox per direction (no socket copies;
// shared_buffer crosses as a handle), an eventfd that wakes the parent's loop and
// a pidfd (or the forkserver's report) that tells the loop it died. All of it
// is read by the event loop that uses the pool: no helper thread per call.
#pragma once

#include <offload/available_cpus.hpp>
#include <offload/detail/intrusive_list.hpp>
#include <offload/detail/proc_spawn.hpp>
#include <offload/detail/proc_wire.hpp>
#include <offload/detail/scheduler.hpp>
#include <offload/detail/timer_heap.hpp>
#include <offload/errors.hpp>
#include <offload/event_loop.hpp>
#include <offload/executor.hpp>
#include <offload/serialize.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <string>
#include <vector>

namespace offload {

enum class start_method { fork, spawn, forkserver };
enum class crash_policy { respawn, break_pool };

/// Resource limits applied with setrlimit in every worker.
struct process_limits {
    /// RLIMIT_CPU: a call that burns more CPU time is killed (SIGXCPU, then SIGKILL): worker_crashed.
    std::optional<std::chrono::seconds> cpu_seconds{};
    /// RLIMIT_AS in bytes: allocations beyond it fail, and std::bad_alloc comes back.
    std::optional<std::size_t> address_space{};
};

struct process_pool_options {
    /// Worker processes; 0 means max(1, available_cpus() - 1).
    std::size_t workers = 0;
    /// How workers start. forkserver (default) and spawn never fork a threaded parent
    /// after the pool exists; fork is fastest but inherits the parent's threads' locks.
    start_method start = start_method::forkserver;
    /// Replace a worker after this many calls (0 = never).
    std::size_t max_tasks_per_child = 0;
    /// Runs once in every new worker (respawns included), before its first call.
    void (*initializer)() = nullptr;
    /// A call running longer is killed with its worker: timeout_error.
    std::optional<std::chrono::nanoseconds> task_timeout{};
    /// respawn: a dead worker fails only its call and is replaced. break_pool:
    /// the pool fails everything with broken_executor, as Python's BrokenProcessPool.
    crash_policy on_crash = crash_policy::respawn;
    process_limits limits{};
    /// Initial size of each worker mailbox; larger payloads grow it (still shared
    /// memory, written in place: one copy in, one copy out). Pages above this
    /// size are given back once a worker has gone a second without a larger message.
    std::size_t shared_memory_threshold = std::size_t(1) << 20;
};

class process_pool;

namespace detail {

class proc_worker_slot;

/// One call as the pool sees it (the typed awaiter derives from it).
struct proc_call : waiter, list_hook {
    enum class phase { idle, queued, running, done };
    enum class fate { none, cancelled, timed_out, closed };

    explicit proc_call(std::source_location loc) : waiter(loc) {}
    proc_call(const proc_call&) = delete;
    proc_call& operator=(const proc_call&) = delete;

    virtual void encode_request(byte_writer& w) = 0;
    virtual void decode_result(byte_reader& r) = 0;

    process_pool* pool = nullptr;
    proc_worker_slot* worker = nullptr;
    clock::time_point enqueued{};
    phase ph = phase::idle;
    fate end = fate::none;
    std::exception_ptr error;
    void cancel() noexcept override;

protected:
    ~proc_call();
};

} // namespace detail

/// A pool of worker processes.
///
/// Thread safety: calls are submitted from the one event loop that uses the
/// pool (it binds to the first loop that awaits a call, and again to a new
/// loop once that one is gone); stats() and shutdown() may be called from any thread.
/// Cancellation: a queued call that is cancelled never runs; a running one is
/// killed with its worker (SIGKILL), which is reaped and replaced before the
/// await throws cancelled_error (or timeout_error).
/// Create pools before starting threads: forking a threaded process is unsafe
/// (the forkserver itself is forked when the pool is created).
/// Example: `process_pool pool({.workers = 4}); int n = co_await run_in_executor(pool, count_primes, 100000);`
class process_pool : private detail::loop_observer {
public:
    explicit process_pool(process_pool_options opts = {});
    process_pool(const process_pool&) = delete;
    process_pool& operator=(const process_pool&) = delete;
    /// Cancels queued calls (executor_closed), gives running ones a grace
    /// period, then kills whatever is left; never hangs.
    ~process_pool();

    /// Call first thing in main: in a worker started by the spawn method it runs
    /// the worker and never returns; anywhere else it returns at once.
    static void worker_main(int argc, char** argv);

    /// Stops accepting calls (executor_closed). With cancel_pending, queued calls
    /// resolve with executor_closed at once. With wait, returns once every worker
    /// has exited. Callable from any thread; from another thread the loop that
    /// uses the pool goes on serving while the workers drain.
    void shutdown(bool wait = true, bool cancel_pending = false);

    executor_stats stats() const;
    /// The pids of the current workers (for tests and diagnostics).
    std::vector<pid_t> worker_pids() const;
    std::size_t workers() const noexcept { return nworkers_; }

    // internal: used by the call awaiter
    void submit(detail::proc_call* c);
    void cancel_call(detail::proc_call* c) noexcept;
    void detach_call(detail::proc_call* c) noexcept;

private:
    friend class detail::proc_worker_slot;
    void loop_closing() noexcept override;
    bool expects_io() const noexcept override { return busy_.load(std::memory_order_relaxed) > 0; }
    void bind(event_loop& loop);
    void unbind() noexcept;
    void start_worker(std::size_t index);
    void watch(detail::proc_worker_slot& w);
    void reap(detail::proc_worker_slot& w) noexcept;
    void on_event() noexcept;
    void on_message(detail::proc_worker_slot& w) noexcept;
    void on_exit(detail::proc_worker_slot& w, int wait_status) noexcept;
    void on_server() noexcept;
    void drain_early_exits() noexcept;
    void dispatch() noexcept;
    void resolve(detail::proc_call* c) noexcept;
    void fail_pending(const std::exception_ptr& e) noexcept;
    void break_pool(const std::string& why) noexcept;
    void kill_worker(detail::proc_worker_slot& w) noexcept;
    void retire(detail::proc_worker_slot& w) noexcept;
    void begin_shutdown(bool cancel_pending) noexcept;
    void check_all_exited() noexcept;
    void drive_blocking(std::chrono::steady_clock::time_point deadline) noexcept;
    void note_size(detail::proc_worker_slot& w, std::size_t bytes) noexcept;
    static constexpr std::chrono::seconds mailbox_hold{1};
    detail::proc_worker_slot* find_pid(pid_t pid) noexcept;
    std::exception_ptr closed_error() const;
    bool debug_fork_warning() const;

    process_pool_options opts_;
    std::size_t nworkers_ = 0;
    std::vector<std::unique_ptr<detail::proc_worker_slot>> slots_;
    detail::intrusive_list<detail::proc_call> pending_;
    event_loop* loop_ = nullptr;
    int eventfd_ = -1;
    pid_t server_pid_ = -1;
    int server_sock_ = -1;
    std::vector<std::pair<pid_t, int>> early_exits_; // forkserver reports read while waiting for a reply
    bool broken_ = false;
    unsigned start_kills_ = 0; // workers SIGKILLed before they were ready, in a row
    std::string broken_why_;
    bool in_destructor_ = false;

    mutable std::mutex mu_; // guards the cross-thread parts: closed_, exited_, and the condvar
    std::condition_variable exited_cv_;
    std::atomic<bool> closed_{false};
    bool all_exited_ = false;

    std::atomic<std::uint64_t> submitted_{0}, completed_{0}, failed_{0}, cancelled_{0};
    std::atomic<std::uint64_t> crashes_{0}, respawns_{0}, kills_{0}, bytes_sent_{0}, bytes_received_{0};
    std::atomic<std::size_t> queued_{0}, busy_{0}, max_queued_{0};
    detail::latency_histogram queue_wait_, run_time_;
};

} // namespace offload

#include <offload/detail/process_pool_impl.hpp>
#include <offload/detail/proc_call_awaiter.hpp>
