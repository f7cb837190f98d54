// offload/detail/process/call_awaiter.hpp — run_in_executor and map for a
// process_pool: the typed awaiter of one call, and the compile-time checks
// that turn a call that cannot cross the process boundary into a sentence.
#pragma once

#include <offload/detail/base/type_traits.hpp>
#include <offload/detail/process/call.hpp>
#include <offload/detail/process/fn_ref.hpp>
#include <offload/detail/process/pool_core.hpp>
#include <offload/detail/process/pool_shutdown.hpp>
#include <offload/detail/process/pool_workers.hpp>
#include <offload/detail/process/wire.hpp>
#include <offload/serialize.hpp>

#include <coroutine>
#include <source_location>

#include <optional>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

namespace offload::detail {

template <class F>
inline constexpr bool process_callable_v =
    (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
    (std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F>);

template <class F, class... A>
class process_call_awaiter final : public process_call {
public:
    using result_type = std::invoke_result_t<F, A...>;

    template <class G, class... B>
    process_call_awaiter(process_pool_core& p, std::source_location loc, G&& fn, B&&... args)
        : process_call(loc), target_(&p), fn_(std::forward<G>(fn)), args_(std::forward<B>(args)...) {}
    // Movable until awaited (so gather and wait_for can take it).
    process_call_awaiter(process_call_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<std::tuple<A...>>)
        : process_call(o.where), target_(o.target_), fn_(std::move(o.fn_)), args_(std::move(o.args_)) {}

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
        std::apply([&w](const A&... a) { encode_args(w, a...); }, args_);
    }
    void decode_result(byte_reader& r) override {
        if constexpr (std::is_void_v<result_type>)
            result_.emplace();
        else
            result_.emplace(codec<result_type>::decode(r));
    }

private:
    process_pool_core* target_;
    F fn_;
    std::tuple<A...> args_;
    std::optional<value_or_monostate_t<result_type>> result_;
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

} // namespace offload::detail
