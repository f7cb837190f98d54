// offload/mpi_pool.hpp — mpi_pool: the same run_in_executor, submit and map,
// over the ranks of an MPI job (Open MPI). Rank 0 runs the program; every
// other rank runs the calls it is sent in a local process_pool of its cores,
// so a crash, a timeout kill or max_tasks_per_child behave as they do
// locally. One thread per process owns MPI; the loop never blocks on it.
// Needs the CMake target offload::mpi (it links MPI); not in <offload/offload.hpp>.
//
// Launch: `mpirun -np N ./prog args`, with mpi_pool::worker_main(argc, argv)
// first thing in main. Calls follow process_pool's rules (a function pointer
// or a captureless lambda; serializable arguments and result), and every
// rank must run the same executable file (checked at the handshake).
// shared_buffer cannot cross ranks: a call that carries one fails with
// serialization_error (pass std::vector<std::byte>: it is sent by value).
// The machinery is in detail/mpi/.
#pragma once

#include <offload/detail/mpi/pool_core.hpp>
#include <offload/detail/mpi/runtime.hpp>
#include <offload/detail/mpi/worker_rank.hpp>
#include <offload/detail/process/call_awaiter.hpp>
#include <offload/detail/process/fn_ref.hpp>
#include <offload/detail/process/wire.hpp>
#include <offload/detail/tasks/chunks.hpp>
#include <offload/detail/tasks/run_all.hpp>
#include <offload/executor.hpp>
#include <offload/future.hpp>
#include <offload/mpi_pool_options.hpp>
#include <offload/process_pool.hpp>
#include <offload/serialize.hpp>
#include <offload/shared_buffer.hpp>
#include <offload/task.hpp>

#include <cstddef>
#include <cstdlib>
#include <optional>
#include <source_location>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace offload {

class mpi_pool;

namespace detail {
inline mpi_pool_core& core_of(mpi_pool& pool) noexcept;
} // namespace detail

/// An executor over the worker ranks of an MPI job.
///
/// Thread safety: calls are submitted from one event loop (the first that
/// awaits a call); stats(), ranks() and shutdown() may be called from any thread.
/// Cancellation: a call still waiting on rank 0 is dropped (it never runs
/// anywhere); one already sent is cancelled on its rank, which kills the
/// worker process running it, and the await throws cancelled_error once the
/// rank confirms. task_timeout kills the same way: timeout_error.
/// Limits: one pool per MPI job (the worker ranks exit when it shuts down).
/// A rank that dies takes the job with it (Open MPI 4.1 aborts the job).
/// Example:
///     int main(int argc, char** argv) {
///         offload::mpi_pool::worker_main(argc, argv); // ranks 1..N-1 serve here
///         offload::mpi_pool pool;
///         return offload::run(work(pool));
///     }
class mpi_pool {
public:
    /// Handshakes with every worker rank (throws std::runtime_error naming each
    /// rank that runs another build, could not start its local pool, never
    /// called worker_main or did not answer within handshake_timeout). When
    /// every rank answered from worker_main, they all exit and the job ends
    /// normally with rank 0; otherwise the job is aborted when rank 0 exits.
    explicit mpi_pool(mpi_pool_options opts = {}) : core_(std::move(opts)) {}
    mpi_pool(const mpi_pool&) = delete;
    mpi_pool& operator=(const mpi_pool&) = delete;
    /// Drops queued calls, cancels running ones on their ranks (their workers
    /// are killed), and stops the worker ranks.
    ~mpi_pool() = default;

    /// Call first thing in main: on rank 0 it returns; on ranks 1..N-1 it
    /// serves calls until rank 0 shuts the pool down, then exits the process
    /// (status 0). Starts MPI (MPI_Init_thread) in the process; the program
    /// must make no MPI calls of its own. Also does what
    /// process_pool::worker_main does (the local pools may use spawn).
    static void worker_main(int argc, char** argv) {
        process_pool::worker_main(argc, argv);
        auto& rt = detail::mpi_runtime::get();
        if (rt.rank() == 0) return;
        int code = detail::run_worker_rank(rt);
        rt.finalize();
        std::exit(code);
    }

    /// Stops accepting calls (executor_closed). With cancel_pending, calls not
    /// yet sent to a rank resolve with executor_closed at once. Once nothing is
    /// in flight the worker ranks are told to exit; with wait, returns when
    /// they all have. Callable from any thread (from another thread than the
    /// loop's, a waiting shutdown needs that loop running).
    void shutdown(bool wait = true, bool cancel_pending = false) { core_.shutdown(wait, cancel_pending); }

    /// The pool's counters in total (workers: every local worker process of every rank).
    executor_stats stats() const { return core_.stats(); }
    /// The counters of each worker rank, in the order of ranks().
    std::vector<executor_stats> rank_stats() const { return core_.rank_stats(); }
    /// The worker ranks, as the handshake found them.
    std::vector<mpi_rank_info> ranks() const { return core_.ranks(); }
    /// Worker processes over all ranks.
    std::size_t workers() const noexcept { return core_.workers(); }

private:
    friend detail::mpi_pool_core& detail::core_of(mpi_pool&) noexcept;
    detail::mpi_pool_core core_;
};

namespace detail {
inline mpi_pool_core& core_of(mpi_pool& pool) noexcept { return pool.core_; }

template <>
inline constexpr bool is_builtin_executor_v<mpi_pool> = true;

template <class F, class... A>
class mpi_call_awaiter final : public mpi_call {
public:
    using result_type = std::invoke_result_t<F, A...>;

    template <class G, class... B>
    mpi_call_awaiter(mpi_pool_core& p, std::source_location loc, G&& fn, B&&... args)
        : mpi_call(loc), target_(&p), fn_(std::forward<G>(fn)), args_(std::forward<B>(args)...) {}
    mpi_call_awaiter(mpi_call_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<std::tuple<A...>>)
        : mpi_call(o.where), target_(o.target_), fn_(std::move(o.fn_)), args_(std::move(o.args_)) {}

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!arm(h)) return false;
        try {
            target_->submit(this);
        } catch (...) {
            disarm();
            throw;
        }
        return true;
    }
    result_type await_resume() {
        throw_if_cancelled();
        if (error) std::rethrow_exception(error);
        if constexpr (!std::is_void_v<result_type>) return std::move(*result_);
    }

    // The same encoding as a process-pool call: a worker process reads it as is.
    void encode_request(byte_writer& w) override {
        encode_fn_ref(w, make_fn_ref(reinterpret_cast<const void*>(&trampoline<F, result_type, A...>)));
        if constexpr (std::is_pointer_v<F>) {
            codec<bool>::encode(w, true);
            encode_fn_ref(w, make_fn_ref(reinterpret_cast<const void*>(fn_)));
        } else {
            codec<bool>::encode(w, false);
        }
        std::apply([&w](const A&... a) { encode_args(w, a...); }, args_);
    }
    void decode_result(byte_reader& r) override {
        if constexpr (std::is_void_v<result_type>)
            result_.emplace();
        else
            result_.emplace(codec<result_type>::decode(r));
    }

private:
    mpi_pool_core* target_;
    F fn_;
    std::tuple<A...> args_;
    std::optional<value_or_monostate_t<result_type>> result_;
};

template <class F, class... A>
constexpr void check_mpi_call() {
    check_process_call<F, A...>();
    static_assert(!(std::is_same_v<A, shared_buffer> || ...) &&
                      !std::is_same_v<std::invoke_result_t<F, A...>, shared_buffer>,
                  "offload: a shared_buffer cannot cross MPI ranks (it is a memfd of this machine); pass the bytes as "
                  "std::vector<std::byte> or std::string, which mpi_pool sends by value");
}
} // namespace detail

/// Runs `fn(args...)` on a worker rank of `pool` (the least loaded), in a
/// worker process of its local pool; resumes on this loop with the result or
/// rethrows (standard exception types as themselves, others as remote_error;
/// a dead worker process as worker_crashed naming the rank and host).
/// Same callable and serialization rules as process_pool (checked at compile time).
template <class F, class... A>
[[nodiscard]] auto run_in_executor(mpi_pool& pool, F&& fn, A&&... args) {
    detail::check_mpi_call<std::decay_t<F>, std::decay_t<A>...>();
    return detail::mpi_call_awaiter<std::decay_t<F>, std::decay_t<A>...>(
        detail::core_of(pool), std::source_location::current(), std::forward<F>(fn), std::forward<A>(args)...);
}

/// Sends `fn(args...)` to `pool` now and returns the future of its result:
/// the eager twin of run_in_executor (discarding the future is fire-and-forget).
template <class F, class... A>
auto submit(mpi_pool& pool, F&& fn, A&&... args) {
    auto call = run_in_executor(pool, std::forward<F>(fn), std::forward<A>(args)...);
    return detail::start_future<typename decltype(call)::result_type>(std::move(call));
}

/// map over the ranks: `chunk_size` items per call (one message each way per
/// chunk), results in input order. As gather, the first failing chunk cancels
/// the others and is rethrown.
template <class F, detail::input_range Range>
[[nodiscard]] auto map(mpi_pool& pool, F&& fn, Range&& range, std::size_t chunk_size = 1) {
    using Fn = std::decay_t<F>;
    using T = detail::range_value_t<Range>;
    using R = std::invoke_result_t<const Fn&, const T&>;
    static_assert(detail::process_callable_v<Fn>,
                  "offload: map over an mpi_pool needs a function pointer or a captureless lambda");
    static_assert(serializable<T> && serializable<R>,
                  "offload: map over an mpi_pool needs serializable items and results");
    auto chunks = detail::split_chunks<T>(std::forward<Range>(range), chunk_size);
    detail::fn_ref ref{};
    if constexpr (std::is_pointer_v<Fn>) ref = detail::make_fn_ref(reinterpret_cast<const void*>(fn));
    return [](mpi_pool& p, detail::fn_ref ref, std::vector<std::vector<T>> chunks) -> task<std::vector<R>> {
        std::vector<task<std::vector<R>>> calls;
        calls.reserve(chunks.size());
        for (auto& c : chunks)
            calls.push_back([](mpi_pool& p, detail::fn_ref ref, std::vector<T> items) -> task<std::vector<R>> {
                co_return co_await run_in_executor(p, &detail::map_chunk_in_worker<Fn, T>, ref.module, ref.offset,
                                                   std::move(items));
            }(p, ref, std::move(c)));
        co_return detail::concat_chunks(co_await detail::run_all(std::move(calls), std::source_location::current()));
    }(pool, ref, std::move(chunks));
}

} // namespace offload
