// offload/process_pool.hpp — process_pool: worker processes for CPU-heavy
// calls, with the things Python's ProcessPoolExecutor cannot do: a dead
// worker fails only its own call and is replaced; a timed-out or cancelled
// call kills its worker, so the core is really freed; fork, spawn and
// forkserver start methods; typed arguments checked at compile time.
// run_in_executor, submit (its eager twin, which returns a future) and map
// for a process pool are here too. The machinery
// (mailboxes, start methods, the worker loop) is in detail/process/.
#pragma once

#include <offload/detail/process/call_awaiter.hpp>
#include <offload/detail/process/fn_ref.hpp>
#include <offload/detail/process/pool_core.hpp>
#include <offload/detail/process/pool_shutdown.hpp>
#include <offload/detail/process/pool_workers.hpp>
#include <offload/detail/process/spawn.hpp>
#include <offload/detail/process/worker.hpp>
#include <offload/detail/tasks/chunks.hpp>
#include <offload/detail/tasks/run_all.hpp>
#include <offload/executor.hpp>
#include <offload/future.hpp>
#include <offload/process_pool_options.hpp>
#include <offload/serialize.hpp>
#include <offload/task.hpp>

#include <cstddef>
#include <cstdlib>
#include <source_location>
#include <type_traits>
#include <utility>
#include <vector>

namespace offload {

class process_pool;

namespace detail {
/// The machinery under a public process_pool (for the library's own layers).
inline process_pool_core& core_of(process_pool& pool) noexcept;
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
class process_pool {
public:
    /// Starts the workers now (with start_method::forkserver, the server process first).
    /// Throws std::invalid_argument for options out of range (workers > 1024, a
    /// non-positive task_timeout or cpu_seconds, nice outside 0..19).
    explicit process_pool(process_pool_options opts = {}) : core_(std::move(opts)) {}
    process_pool(const process_pool&) = delete;
    process_pool& operator=(const process_pool&) = delete;
    /// Cancels queued calls (executor_closed), gives running ones a grace
    /// period, then kills whatever is left; never hangs.
    ~process_pool() = default;

    /// Call first thing in main: in a worker started by the spawn method it runs
    /// the worker and never returns; anywhere else it returns at once.
    static void worker_main(int argc, char** argv) {
        if (!detail::is_spawned_worker(argc, argv)) return;
        pid_t parent = static_cast<pid_t>(std::atol(argv[2]));
        constexpr int first = detail::spawn_first_fd;
        detail::run_worker({first, first + 1, first + 2, first + 3}, parent);
    }

    /// Stops accepting calls (executor_closed). With cancel_pending, queued calls
    /// resolve with executor_closed at once. With wait, returns once every worker
    /// has exited. Callable from any thread; from another thread the loop that
    /// uses the pool goes on serving while the workers drain (that loop must
    /// be running, or run, for a waiting shutdown to return). On the loop's
    /// thread, inside a step or between runs, it drives the workers itself.
    void shutdown(bool wait = true, bool cancel_pending = false) { core_.shutdown(wait, cancel_pending); }

    /// A snapshot of the pool's counters and latency percentiles.
    executor_stats stats() const { return core_.stats(); }
    /// The pids of the current workers (for tests and diagnostics).
    std::vector<pid_t> worker_pids() const { return core_.worker_pids(); }
    /// Number of worker processes.
    std::size_t workers() const noexcept { return core_.workers(); }

private:
    friend detail::process_pool_core& detail::core_of(process_pool&) noexcept;
    detail::process_pool_core core_;
};

namespace detail {
inline process_pool_core& core_of(process_pool& pool) noexcept { return pool.core_; }

template <>
inline constexpr bool is_builtin_executor_v<process_pool> = true;
} // namespace detail

/// Runs `fn(args...)` in a worker process of `pool`; resumes on this loop with
/// its result, or rethrows its exception (standard types as themselves, others
/// as remote_error; a dead worker as worker_crashed).
///
/// `fn` must be a function pointer or a captureless lambda, and arguments and
/// result serializable: anything else is a compile-time error that says so.
/// Cancellation: a queued call never runs; a running one is killed with its
/// worker, which is reaped and replaced, then cancelled_error is thrown.
template <class F, class... A>
[[nodiscard]] auto run_in_executor(process_pool& pool, F&& fn, A&&... args) {
    detail::check_process_call<std::decay_t<F>, std::decay_t<A>...>();
    return detail::process_call_awaiter<std::decay_t<F>, std::decay_t<A>...>(
        detail::core_of(pool), std::source_location::current(), std::forward<F>(fn), std::forward<A>(args)...);
}

/// Sends `fn(args...)` to a worker process of `pool` now (or queues it for
/// the next idle worker) and returns the future of its result: the eager
/// twin of run_in_executor, with the same callable and serialization rules.
///
/// Discarding the future is fire-and-forget: the call still runs, and an
/// exception nobody retrieved goes to the loop's exception handler.
/// Cancellation: future::cancel() drops a call still queued (it never runs)
/// and kills the worker of a running one, which is replaced; the future is
/// cancelled at once. A worker that dies fails the future with
/// worker_crashed; shutdown(…, cancel_pending) fails a queued call with
/// executor_closed; submit on a pool shut down or broken throws.
/// Example: `auto f = submit(pool, count_primes, 100000); co_await other(); int n = co_await f;`
template <class F, class... A>
auto submit(process_pool& pool, F&& fn, A&&... args) {
    auto call = run_in_executor(pool, std::forward<F>(fn), std::forward<A>(args)...); // the lazy awaitable
    return detail::start_future<typename decltype(call)::result_type>(std::move(call));
}

/// map over a process pool: `chunk_size` items per call (the main lever against
/// per-call IPC cost), results in input order. The function must be a function
/// pointer or a captureless lambda; items and results serializable.
/// Cancellation and failure: as gather — the first failing chunk cancels the
/// others (queued chunks never run, running ones are killed) and is rethrown.
template <class F, detail::input_range Range>
[[nodiscard]] auto map(process_pool& pool, F&& fn, Range&& range, std::size_t chunk_size = 1) {
    using Fn = std::decay_t<F>;
    using T = detail::range_value_t<Range>;
    using R = std::invoke_result_t<const Fn&, const T&>;
    static_assert(detail::process_callable_v<Fn>,
                  "offload: map over a process_pool needs a function pointer or a captureless lambda");
    static_assert(serializable<T> && serializable<R>,
                  "offload: map over a process_pool needs serializable items and results");
    auto chunks = detail::split_chunks<T>(std::forward<Range>(range), chunk_size);
    detail::fn_ref ref{};
    if constexpr (std::is_pointer_v<Fn>) ref = detail::make_fn_ref(reinterpret_cast<const void*>(fn));
    return [](process_pool& p, detail::fn_ref ref, std::vector<std::vector<T>> chunks) -> task<std::vector<R>> {
        std::vector<task<std::vector<R>>> calls;
        calls.reserve(chunks.size());
        for (auto& c : chunks)
            calls.push_back([](process_pool& p, detail::fn_ref ref, std::vector<T> items) -> task<std::vector<R>> {
                co_return co_await run_in_executor(p, &detail::map_chunk_in_worker<Fn, T>, ref.module, ref.offset,
                                                   std::move(items));
            }(p, ref, std::move(c)));
        co_return detail::concat_chunks(co_await detail::run_all(std::move(calls), std::source_location::current()));
    }(pool, ref, std::move(chunks));
}

} // namespace offload
