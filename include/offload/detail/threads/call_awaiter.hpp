// offload/detail/threads/call_awaiter.hpp — the awaiter of one call on a
// thread pool (to_thread, run_in_executor, offload). It owns the call until it is
// awaited, then drives it: admission (a bounded pool may make it wait for a
// slot), submission, completion back on the awaiting loop, and cancellation
// in every phase. The driving is call_op, which call_batch.hpp reuses to
// drive many calls under one awaiter. All this state is touched on the loop
// thread only.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/waiter.hpp>
#include <offload/detail/threads/call.hpp>
#include <offload/detail/threads/call_queue.hpp>
#include <offload/errors.hpp>

#include <fmt/core.h>

#include <coroutine>
#include <cstdint>
#include <source_location>
#include <stdexcept>
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

/// One call as the loop sees it: admission (a bounded pool may make it wait
/// for a slot), submission, completion back on the loop, and withdrawal in
/// every phase. It owns one reference to the call. Loop thread only. The
/// thread_call_awaiter drives one; a gather of offload awaitables drives many
/// (call_batch.hpp) without a task per call.
class call_op final : private call_listener {
public:
    /// Hears when a started call has ended (ran, was dropped by shutdown, or was
    /// cancelled while its slot grant was on its way). Never called from start().
    struct owner {
        virtual void op_ended(call_op& op) noexcept = 0;

    protected:
        ~owner() = default;
    };

    call_op(call_queue queue, thread_call* c) noexcept : queue_(queue), call_(c) {}
    call_op(call_op&& o) noexcept : queue_(o.queue_), call_(std::exchange(o.call_, nullptr)) {} // while idle only
    call_op& operator=(const call_op&) = delete;
    ~call_op() {
        withdraw();
        if (call_) call_->unref();
    }

    thread_call* call() const noexcept { return call_; }
    call_queue& queue() noexcept { return queue_; }
    /// The executor dropped the call unrun (shutdown): the await throws executor_closed.
    bool closed() const noexcept { return closed_; }
    /// A cancellation came while the slot grant was on its way: the op ended cancelled.
    bool cancelled_on_grant() const noexcept { return cancel_on_grant_; }
    bool started() const noexcept { return phase_ != phase::idle; }
    bool ended() const noexcept { return phase_ == phase::done; }

    /// Admits and queues the call. Returns false when it ended at once (the
    /// executor closed between admission and queueing: closed()); otherwise the
    /// owner hears op_ended later. Throws executor_closed from admission (then
    /// nothing was started). `batch`: see call_queue::enqueue.
    bool start(loop_core& loop, owner* o, const clock::time_point* batch = nullptr) {
        if (!call_) throw std::logic_error("offload: an offloaded call can be awaited once");
        call_->loop = &loop;
        call_->listener = this;
        bool admitted = queue_.admit(call_); // throws executor_closed
        loop_ = &loop;
        owner_ = o;
        loop.expect_remote(+1);
        if (!admitted) {
            phase_ = phase::waiting_slot;
            return true;
        }
        return submit(false, batch);
    }

    /// A cancellation: true when the call was withdrawn now (it never ran, or
    /// it runs on abandoned and was asked to stop): the op ended cancelled and
    /// the owner hears nothing. False when its outcome is on its way (it
    /// finished, or shutdown dropped it), or a slot grant is: the owner hears
    /// op_ended when it lands (cancelled_on_grant() says which).
    bool cancel() noexcept {
        switch (phase_) {
        case phase::waiting_slot:
            if (queue_.cancel_waiting(call_)) {
                end_withdrawn();
                return true;
            }
            cancel_on_grant_ = true; // give the slot back when it lands
            return false;
        case phase::submitted:
            if (queue_.cancel_queued(call_)) { // never ran, never will
                end_withdrawn();
                return true;
            }
            if (auto s = call_state::running;
                call_->state.compare_exchange_strong(s, call_state::abandoned, std::memory_order_acq_rel)) {
                call_->request_stop(); // the worker stays busy until the call returns
                call_->listener = nullptr;
                end_withdrawn();
                return true;
            }
            return false;
        case phase::idle:
        case phase::done: return false;
        }
        return false;
    }

    /// Ends the op now, whatever its phase, and never tells the owner: a call
    /// still queued is withdrawn, a running one abandoned (asked to stop), and
    /// an outcome or a slot grant on its way finds nobody (the node outlives
    /// us on the pool's reference). Idempotent.
    void withdraw() noexcept {
        if (!call_ || phase_ == phase::idle || phase_ == phase::done) return;
        call_->listener = nullptr;
        if (phase_ == phase::waiting_slot) {
            if (queue_.cancel_waiting(call_)) loop_->expect_remote(-1);
            // else: the grant in flight finds no listener and gives the slot back
        } else if (queue_.cancel_queued(call_)) {
            loop_->expect_remote(-1);
        } else if (auto s = call_state::running;
                   call_->state.compare_exchange_strong(s, call_state::abandoned, std::memory_order_acq_rel)) {
            call_->request_stop();
            loop_->expect_remote(-1);
        }
        // else: finished; the completion in flight finds no listener
        phase_ = phase::done;
    }

    /// Whether the ended op's await would throw (not counting cancellation).
    bool failed() const noexcept { return closed_ || call_->failed; }

    /// The outcome of an ended op that was neither cancelled nor closed.
    template <class R>
    R take() {
        return static_cast<result_call<R>*>(call_)->take();
    }

    /// Throws what the await of a closed op throws.
    [[noreturn]] void throw_closed() const {
        if (call_->error) std::rethrow_exception(call_->error); // the executor refused it, and said why
        throw executor_closed(fmt::format("offload::executor_closed: {} shut down before this call started; "
                                          "it never ran",
                                          queue_.describe()));
    }

private:
    enum class phase : std::uint8_t { idle, waiting_slot, submitted, done };

    bool submit(bool holds_pool_ref, const clock::time_point* batch) noexcept {
        if (queue_.enqueue(call_, holds_pool_ref, batch)) {
            phase_ = phase::submitted;
            return true;
        }
        closed_ = true;
        phase_ = phase::done;
        loop_->expect_remote(-1);
        return false;
    }

    void end_withdrawn() noexcept {
        phase_ = phase::done;
        loop_->expect_remote(-1);
    }

    void slot_granted() noexcept override {
        if (cancel_on_grant_) {
            queue_.return_slot(call_);
            end_withdrawn();
            owner_->op_ended(*this);
            return;
        }
        if (!submit(true, nullptr)) owner_->op_ended(*this);
    }

    void call_finished() noexcept override {
        phase_ = phase::done;
        if (call_->closed) closed_ = true;
        owner_->op_ended(*this);
    }

    call_queue queue_;
    thread_call* call_;
    loop_core* loop_ = nullptr;
    owner* owner_ = nullptr;
    phase phase_ = phase::idle;
    bool closed_ = false;
    bool cancel_on_grant_ = false;
};

template <class F, class... A>
class thread_call_awaiter final : public waiter, private call_op::owner {
public:
    using call_type = bound_call<F, A...>;
    using result_type = call_result_t<F, A...>;

    template <class G, class... B>
    thread_call_awaiter(call_queue queue, queue_resolver resolve, std::source_location loc, G&& fn, B&&... args)
        : waiter(loc), resolve_(resolve), op_(queue, new call_type(std::forward<G>(fn), std::forward<B>(args)...)) {}
    // Movable until awaited (so gather and wait_for can take it).
    thread_call_awaiter(thread_call_awaiter&& o) noexcept
        : waiter(o.where), resolve_(o.resolve_), op_(std::move(o.op_)) {}
    thread_call_awaiter& operator=(const thread_call_awaiter&) = delete;
    ~thread_call_awaiter() = default;

    bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> h) {
        if (!op_.call() || op_.started()) throw std::logic_error("offload: an offloaded call can be awaited once");
        if (!arm(h)) return false;
        try {
            resolve_queue(*loop);
            if (!op_.start(*loop, this)) wake(); // the executor closed meanwhile
            return true;
        } catch (...) {
            disarm();
            throw;
        }
    }

    result_type await_resume() {
        throw_if_cancelled();
        if (op_.closed()) op_.throw_closed();
        return op_.template take<result_type>();
    }

    void cancel() noexcept override {
        if (!op_.started() || op_.ended()) return;
        if (op_.cancel()) {
            wake_cancelled();
            return;
        }
        disarm();
        // Finished (or dropped by shutdown): the outcome is on its way and
        // wins; the cancellation is thrown at the task's next await.
        if (!op_.cancelled_on_grant() && ctx) ctx->cancel_pending = true;
    }

private:
    template <class, class...>
    friend class call_batch_awaiter;

    void resolve_queue(loop_core& loop) {
        if (resolve_) op_.queue() = resolve_(loop);
    }

    void op_ended(call_op& op) noexcept override {
        if (op.cancelled_on_grant())
            wake_cancelled();
        else
            wake();
    }

    queue_resolver resolve_;
    call_op op_;
};

} // namespace offload::detail
