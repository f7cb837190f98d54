// offload/detail/proc_call_awaiter.hpp — run_in_executor and map for a
// process_pool: the typed awaiter of one call, and the compile-time checks
// that turn a call that cannot cross the process boundary into a sentence.
#pragma once

#include <offload/detail/proc_wire.hpp>
#include <offload/gather.hpp>
#include <offload/process_pool.hpp>
#include <offload/serialize.hpp>

#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

namespace offload {
namespace detail {

template <class F>
inline constexpr bool process_callable_v =
    (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
    (std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F>);

template <class F, class... A>
class process_call_awaiter final : public proc_call {
public:
    using result_type = std::invoke_result_t<F, A...>;

    template <class G, class... B>
    process_call_awaiter(process_pool& p, std::source_location loc, G&& fn, B&&... args)
        : proc_call(loc), target_(&p), fn_(std::forward<G>(fn)), args_(std::forward<B>(args)...) {}
    // Movable until awaited (so gather and wait_for can take it).
    process_call_awaiter(process_call_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<std::tuple<A...>>)
        : proc_call(o.where), target_(o.target_), fn_(std::move(o.fn_)), args_(std::move(o.args_)) {}

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

    void encode_request(byte_writer& w) override {
        encode_fn_ref(w, make_fn_ref(reinterpret_cast<const void*>(&trampoline<F, result_type, A...>)));
        if constexpr (std::is_pointer_v<F>) {
            codec<bool>::encode(w, true);
            encode_fn_ref(w, make_fn_ref(reinterpret_cast<const void*>(fn_)));
        } else {
            codec<bool>::encode(w, false);
        }
        std::apply([&w](const A&... a) { ((void)w, ..., codec<A>::encode(w, a)); }, args_);
    }
    void decode_result(byte_reader& r) override {
        if constexpr (std::is_void_v<result_type>)
            result_.emplace();
        else
            result_.emplace(codec<result_type>::decode(r));
    }

private:
    process_pool* target_;
    F fn_;
    std::tuple<A...> args_;
    std::optional<std::conditional_t<std::is_void_v<result_type>, std::monostate, result_type>> result_;
};

template <class F, class... A>
constexpr void check_process_call() {
    static_assert(process_callable_v<F>,
                  "offload: a callable sent to a process_pool must be a function pointer or a captureless lambda: "
                  "captured state (and std::function) cannot cross the process boundary. Pass the state as "
                  "arguments instead.");
    static_assert(std::is_invocable_v<F, A...>,
                  "offload: the callable cannot be called with these arguments (they are passed as decayed rvalues)");
    static_assert((serializable<A> && ...),
                  "offload: every argument of a process_pool call must be serializable (arithmetic, enum, string, "
                  "standard containers, aggregates of those, or a type with a codec); this one is not");
    using R = std::invoke_result_t<F, A...>;
    static_assert(std::is_void_v<R> || serializable<R>,
                  "offload: the result of a process_pool call must be serializable (or void); this one is not");
}

// map over a process pool: one call per chunk; the element function travels
// as a module+offset pair (or not at all for a captureless lambda).
template <class F, class T>
std::vector<std::invoke_result_t<const F&, const T&>> map_chunk_in_worker(std::uint32_t module, std::uint64_t offset,
                                                                          std::vector<T> items) {
    std::vector<std::invoke_result_t<const F&, const T&>> out;
    out.reserve(items.size());
    if constexpr (std::is_pointer_v<F>) {
        auto fn = reinterpret_cast<F>(const_cast<void*>(resolve_fn_ref({module, offset})));
        for (const T& x : items) out.push_back(fn(x));
    } else {
        F fn{};
        for (const T& x : items) out.push_back(fn(x));
    }
    return out;
}

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
        pool, std::source_location::current(), std::forward<F>(fn), std::forward<A>(args)...);
}

/// map over a process pool: `chunk_size` items per call (the main lever against
/// per-call IPC cost), results in input order.
template <class F, std::ranges::input_range Range>
[[nodiscard]] auto map(process_pool& pool, F&& fn, Range&& range, std::size_t chunk_size = 1) {
    using Fn = std::decay_t<F>;
    using T = std::ranges::range_value_t<Range>;
    using R = std::invoke_result_t<const Fn&, const T&>;
    static_assert(detail::process_callable_v<Fn>,
                  "offload: map over a process_pool needs a function pointer or a captureless lambda");
    static_assert(serializable<T> && serializable<R>, "offload: map over a process_pool needs serializable items and results");
    if (chunk_size == 0)
        throw std::invalid_argument("offload::map: chunk_size must be at least 1 (it is the number of items per call)");
    detail::fn_ref ref{};
    if constexpr (std::is_pointer_v<Fn>) ref = detail::make_fn_ref(reinterpret_cast<const void*>(fn));
    std::vector<std::vector<T>> chunks;
    std::vector<T> cur;
    for (auto&& x : range) {
        cur.push_back(x);
        if (cur.size() == chunk_size) chunks.push_back(std::exchange(cur, {}));
    }
    if (!cur.empty()) chunks.push_back(std::move(cur));
    return [](process_pool& p, detail::fn_ref ref, std::vector<std::vector<T>> chunks) -> task<std::vector<R>> {
        std::vector<task<std::vector<R>>> calls;
        calls.reserve(chunks.size());
        for (auto& c : chunks)
            calls.push_back([](process_pool& p, detail::fn_ref ref, std::vector<T> items) -> task<std::vector<R>> {
                co_return co_await run_in_executor(p, &detail::map_chunk_in_worker<Fn, T>, ref.module, ref.offset,
                                                   std::move(items));
            }(p, ref, std::move(c)));
        auto parts = co_await gather(std::move(calls));
        std::vector<R> out;
        for (auto& part : parts)
            for (auto& r : part) out.push_back(std::move(r));
        co_return out;
    }(pool, ref, std::move(chunks));
}

} // namespace offload
