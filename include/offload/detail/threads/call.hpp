// offload/detail/threads/call.hpp — one offloaded call as the thread pool sees it:
// a heap node shared by the awaiting coroutine and the pool (two references),
// whose atomic state decides every race between a worker starting it, the
// caller cancelling it and shutdown dropping it. The same node travels back
// to the loop as an intrusive remote completion, so a round trip allocates once.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/type_traits.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/remote_queue.hpp>
#include <offload/executor.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace offload::detail {

// Who owns a call right now. Transitions (each a CAS, so exactly one side wins):
//   waiting_slot -> queued            the pool granted a queue slot (bounded pools)
//   queued       -> running           a worker claims it
//   queued       -> dropped           the caller cancelled, shutdown(cancel_pending) dropped it,
//                                     or a user's executor destroyed its executor_work unrun
//   running      -> finished          the worker returns; the result travels to the loop
//   running      -> abandoned         the caller gave up; the worker discards the result
enum class call_state : std::uint8_t { waiting_slot, queued, running, finished, dropped, abandoned };

/// The loop-side receiver of a call's events (the awaiter).
struct call_listener {
    virtual void slot_granted() noexcept = 0; // a bounded pool gave the call a queue slot
    virtual void call_finished() noexcept = 0; // the call ran (or was dropped by shutdown)

protected:
    ~call_listener() = default;
};

struct thread_call;

/// The pool side of a bounded queue.
struct slot_source {
    /// A call that was granted a slot will not be queued after all (its caller
    /// gave up): count it as cancelled, pass the slot on, drop the pool's reference.
    virtual void return_slot(thread_call* c) noexcept = 0;

protected:
    ~slot_source() = default;
};

// Call nodes are recycled on the thread that allocates them (a loop's thread):
// a free list per 16-byte size class up to 512 bytes, at most 1 MiB kept per
// thread, so awaiting an offload allocates nothing once the loop has run a
// few. A node freed on another thread (a worker dropping an abandoned call)
// goes back to the heap. Off under AddressSanitizer, which then sees every node.
#if defined(__SANITIZE_ADDRESS__)
#define OFFLOAD_CALL_NODE_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OFFLOAD_CALL_NODE_CACHE 0
#endif
#endif
#ifndef OFFLOAD_CALL_NODE_CACHE
#define OFFLOAD_CALL_NODE_CACHE 1
#endif

struct call_node_cache {
    static constexpr std::size_t granule = 16;
    static constexpr std::size_t max_node = 512;
    static constexpr std::size_t max_bytes = std::size_t{1} << 20;

    struct free_node {
        free_node* next;
    };
    // Trivially destructible, so it outlives the guard below at thread exit.
    struct state {
        free_node* heads[max_node / granule + 1];
        std::size_t bytes;
        bool owner; // this thread allocates nodes (so it keeps freed ones)
        bool dead;  // the thread is exiting: no more caching
    };
    static state& local() noexcept {
        static thread_local state s{};
        return s;
    }
    // Frees what the thread kept when it exits.
    struct guard {
        ~guard() {
            state& s = local();
            s.dead = true;
            s.owner = false;
            for (auto*& h : s.heads)
                while (free_node* f = h) {
                    h = f->next;
                    ::operator delete(f);
                }
            s.bytes = 0;
        }
    };

    static void* allocate(std::size_t n) {
        if (!OFFLOAD_CALL_NODE_CACHE || n > max_node) return ::operator new(n);
        state& s = local();
        const std::size_t k = (n + granule - 1) / granule;
        if (free_node* f = s.heads[k]) {
            s.heads[k] = f->next;
            s.bytes -= k * granule;
            return f;
        }
        if (!s.owner && !s.dead) {
            static thread_local guard g; // constructed once per thread, on first use
            (void)&g;
            s.owner = true;
        }
        return ::operator new(k* granule);
    }
    static void deallocate(void* p, std::size_t n) noexcept {
        if (OFFLOAD_CALL_NODE_CACHE && n <= max_node) {
            state& s = local();
            const std::size_t k = (n + granule - 1) / granule;
            if (s.owner && s.bytes + k * granule <= max_bytes) {
                s.heads[k] = new (p) free_node{s.heads[k]};
                s.bytes += k * granule;
                return;
            }
        }
        ::operator delete(p);
    }
};

struct thread_call : remote_node, work_item {
    enum class event : std::uint8_t { none, slot, finished };

    std::atomic<call_state> state{call_state::queued};
    std::atomic<int> refs{1}; // the awaiter's; the executor adds its own when it takes the call
    loop_core* loop = nullptr;
    slot_source* slots = nullptr;      // set while the call waits for a slot of a bounded pool
    call_listener* listener = nullptr; // loop thread only; null once the awaiter is gone
    event posted = event::none;       // what the remote completion carries
    bool closed = false;              // dropped by shutdown: resolves with executor_closed
    bool failed = false;              // the call threw
    std::exception_ptr error;
    clock::time_point enqueued{};

    // Recycled (see call_node_cache); over-aligned calls use the plain heap.
    static void* operator new(std::size_t n) { return call_node_cache::allocate(n); }
    static void operator delete(void* p, std::size_t n) noexcept { call_node_cache::deallocate(p, n); }
    static void* operator new(std::size_t n, std::align_val_t a) { return ::operator new(n, a); }
    static void operator delete(void* p, std::size_t, std::align_val_t a) noexcept { ::operator delete(p, a); }

    thread_call() = default;
    thread_call(const thread_call&) = delete;
    thread_call& operator=(const thread_call&) = delete;
    virtual ~thread_call() = default;

    /// Worker: runs the call and stores its result or exception. Never throws.
    virtual void execute() noexcept = 0;
    /// Asks a running call that accepts a std::stop_token to stop.
    virtual void request_stop() noexcept {}

    void unref() noexcept {
        // acq_rel: the last owner must see every write the others made.
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    void run_on_loop() override {
        event e = std::exchange(posted, event::none);
        if (e == event::slot) {
            if (listener) {
                listener->slot_granted();
            } else { // the awaiter is gone: give the slot back, nothing to queue
                loop->expect_remote(-1);
                slots->return_slot(this); // drops the pool's reference
            }
            return;
        }
        loop->expect_remote(-1);
        if (listener) listener->call_finished();
        unref();
    }
    void discard() noexcept override { unref(); }

    // As an executor_work of a user-written executor (which holds one reference).
    void run() noexcept override {
        auto expected = call_state::queued;
        if (!state.compare_exchange_strong(expected, call_state::running, std::memory_order_acq_rel)) {
            unref(); // cancelled while it waited in the executor's queue
            return;
        }
        execute();
        expected = call_state::running;
        if (!state.compare_exchange_strong(expected, call_state::finished, std::memory_order_acq_rel)) {
            unref(); // the caller gave up while it ran
            return;
        }
        posted = event::finished;
        loop->post_remote(this); // our reference travels with it
    }
    void drop() noexcept override {
        auto expected = call_state::queued;
        if (!state.compare_exchange_strong(expected, call_state::dropped, std::memory_order_acq_rel)) {
            unref(); // cancelled already
            return;
        }
        closed = true;
        posted = event::finished;
        loop->post_remote(this);
    }
};

/// A call of `F` with decay-copied arguments; if F takes a std::stop_token
/// first, it receives one that cancellation requests.
template <class F, class... A>
struct bound_call;

// Like std::thread, the callable and the decay-copied arguments are passed as rvalues.
template <class F, class... A>
inline constexpr bool takes_stop_token_v = std::is_invocable_v<F, std::stop_token, A...>;

template <class F, class... A>
using call_result_t =
    typename std::conditional_t<takes_stop_token_v<F, A...>, std::invoke_result<F, std::stop_token, A...>,
                                std::invoke_result<F, A...>>::type;

template <class R>
struct result_call : thread_call {
    std::optional<value_or_monostate_t<R>> result;

    R take() {
        if (error) std::rethrow_exception(error);
        if constexpr (!std::is_void_v<R>) return std::move(*result);
    }
};

template <class F, class... A>
struct bound_call final : result_call<call_result_t<F, A...>> {
    using R = call_result_t<F, A...>;
    static constexpr bool stoppable = takes_stop_token_v<F, A...>;

    F fn;
    std::tuple<A...> args;
    [[no_unique_address]] std::conditional_t<stoppable, std::stop_source, std::monostate> stop;

    template <class G, class... B>
    explicit bound_call(G&& g, B&&... b) : fn(std::forward<G>(g)), args(std::forward<B>(b)...) {}

    void execute() noexcept override {
        try {
            auto call = [this]() -> decltype(auto) {
                if constexpr (stoppable)
                    return std::apply(
                        [this](A&... a) -> R { return std::invoke(std::move(fn), stop.get_token(), std::move(a)...); },
                        args);
                else
                    return std::apply([this](A&... a) -> R { return std::invoke(std::move(fn), std::move(a)...); },
                                      args);
            };
            if constexpr (std::is_void_v<R>) {
                call();
                this->result.emplace();
            } else {
                this->result.emplace(call());
            }
        } catch (...) {
            this->error = std::current_exception();
            this->failed = true;
        }
    }
    void request_stop() noexcept override {
        if constexpr (stoppable) stop.request_stop();
    }
};

} // namespace offload::detail
