// offload/detail/threads/call_awaiter.hpp — the awaiter of one call on a
// thread pool (to_thread, run_in_executor, offload). It owns the call until it is
// awaited, then drives it: admission (a bounded pool may make it wait for a
// slot), submission, completion back on the awaiting loop, and cancellation
// in every phase. All its own state is touched on the loop thread only.
#pragma once

#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/waiter.hpp>
#include <offload/detail/threads/call.hpp>
#include <offload/detail/threads/call_queue.hpp>
#include <offload/errors.hpp>

#include <fmt/core.h>

#include <source_location>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace offload::detail {

/// Finds the queue of a call when it is awaited (the loop's default pool, say).
using queue_resolver = call_queue (*)(loop_core&);

/// What a thread pool can run: fn(args...), or fn(stop_token, args...).
template <class F, class... A>
concept offloadable = std::is_invocable_v<std::decay_t<F>, std::decay_t<A>...> ||
                      std::is_invocable_v<std::decay_t<F>, std::stop_token, std::decay_t<A>...>;

template <class F, class... A>
class thread_call_awaiter final : public waiter, private call_listener {
public:
    using call_type = bound_call<F, A...>;
    using result_type = call_result_t<F, A...>;

    template <class G, class... B>
    thread_call_awaiter(call_queue queue, queue_resolver resolve, std::source_location loc, G&& fn, B&&... args)
        : waiter(loc), pool_(queue), resolve_(resolve),
          call_(new call_type(std::forward<G>(fn), std::forward<B>(args)...)) {}
    // Movable until awaited (so gather and wait_for can take it).
    thread_call_awaiter(thread_call_awaiter&& o) noexcept
        : waiter(o.where), pool_(o.pool_), resolve_(o.resolve_), call_(std::exchange(o.call_, nullptr)) {}
    thread_call_awaiter& operator=(const thread_call_awaiter&) = delete;
    ~thread_call_awaiter() { release(); }

    bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> h) {
        if (!call_) throw std::logic_error("offload: an offloaded call can be awaited once");
        if (!arm(h)) return false;
        try {
            if (resolve_) pool_ = resolve_(*loop);
            call_->loop = loop;
            call_->listener = this;
            bool admitted = pool_.admit(call_); // throws executor_closed
            loop->expect_remote(+1);
            if (!admitted) {
                phase_ = phase::waiting_slot;
                return true;
            }
            submit(false);
            return true;
        } catch (...) {
            disarm();
            throw;
        }
    }

    result_type await_resume() {
        throw_if_cancelled();
        if (closed_) {
            if (call_->error) std::rethrow_exception(call_->error); // the executor refused it, and said why
            throw executor_closed(fmt::format("offload::executor_closed: {} shut down before this call started; "
                                              "it never ran",
                                              pool_.describe()));
        }
        return static_cast<result_call<result_type>*>(call_)->take();
    }

    void cancel() noexcept override {
        switch (phase_) {
        case phase::waiting_slot:
            if (pool_.cancel_waiting(call_)) {
                finish_cancelled();
            } else { // the slot grant is on its way; give it back when it lands
                cancel_on_grant_ = true;
                disarm();
            }
            return;
        case phase::submitted:
            if (pool_.cancel_queued(call_)) { // never ran, never will
                finish_cancelled();
                return;
            }
            if (auto s = call_state::running;
                call_->state.compare_exchange_strong(s, call_state::abandoned, std::memory_order_acq_rel)) {
                call_->request_stop(); // the worker stays busy until the call returns
                call_->listener = nullptr;
                finish_cancelled();
                return;
            }
            // Finished (or dropped by shutdown): the outcome is on its way and
            // wins; the cancellation is thrown at the task's next await.
            disarm();
            if (ctx) ctx->cancel_pending = true;
            return;
        case phase::idle:
        case phase::done: return;
        }
    }

private:
    enum class phase { idle, waiting_slot, submitted, done };

    void submit(bool holds_pool_ref) noexcept {
        if (pool_.enqueue(call_, holds_pool_ref)) {
            phase_ = phase::submitted;
        } else {
            closed_ = true;
            phase_ = phase::done;
            loop->expect_remote(-1);
            wake();
        }
    }

    void finish_cancelled() noexcept {
        phase_ = phase::done;
        loop->expect_remote(-1);
        wake_cancelled();
    }

    void slot_granted() noexcept override {
        if (cancel_on_grant_) {
            pool_.return_slot(call_);
            phase_ = phase::done;
            loop->expect_remote(-1);
            wake_cancelled();
            return;
        }
        submit(true);
    }

    void call_finished() noexcept override {
        phase_ = phase::done;
        if (call_->closed) closed_ = true;
        if (cancel_on_grant_) cancelled = true;
        wake();
    }

    // The awaiting frame goes away (normally after completion; or torn down
    // with its loop while the call is still out): make sure nobody calls back.
    void release() noexcept {
        if (!call_) return;
        call_->listener = nullptr;
        if (phase_ == phase::waiting_slot) {
            if (pool_.cancel_waiting(call_)) loop->expect_remote(-1);
            // else: the grant in flight finds no listener and gives the slot back
        } else if (phase_ == phase::submitted) {
            if (pool_.cancel_queued(call_)) {
                loop->expect_remote(-1);
            } else if (auto s = call_state::running;
                       call_->state.compare_exchange_strong(s, call_state::abandoned, std::memory_order_acq_rel)) {
                call_->request_stop();
                loop->expect_remote(-1);
            }
            // else: finished; the completion in flight finds no listener
        }
        std::exchange(call_, nullptr)->unref();
    }

    call_queue pool_;
    queue_resolver resolve_;
    thread_call* call_;
    phase phase_ = phase::idle;
    bool closed_ = false;
    bool cancel_on_grant_ = false;
};

} // namespace offload::detail
