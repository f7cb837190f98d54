// offload/detail/pool_call.hpp — the awaiter of one call on a thread_pool
// (to_thread, run_in_executor, offload). It owns the call's job until it is
// awaited, then drives it: admission (a bounded pool may make it wait for a
// slot), submission, completion back on the awaiting loop, and cancellation
// in every phase. All its own state is touched on the loop thread only.
#pragma once

#include <offload/detail/pool_job.hpp>
#include <offload/detail/scheduler.hpp>
#include <offload/errors.hpp>
#include <offload/event_loop.hpp>
#include <offload/thread_pool.hpp>

#include <source_location>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace offload::detail {

enum class pool_choice { given, default_thread_pool, default_executor };

/// What a thread pool can run: fn(args...), or fn(stop_token, args...).
template <class F, class... A>
concept offloadable = std::is_invocable_v<std::decay_t<F>, std::decay_t<A>...> ||
                      std::is_invocable_v<std::decay_t<F>, std::stop_token, std::decay_t<A>...>;

template <class F, class... A>
class pool_call_awaiter final : public waiter, private job_listener {
public:
    using job_type = call_job<F, A...>;
    using result_type = call_result_t<F, A...>;

    template <class G, class... B>
    pool_call_awaiter(thread_pool* pool, pool_choice which, std::source_location loc, G&& fn, B&&... args)
        : waiter(loc), pool_(pool), which_(which), job_(new job_type(std::forward<G>(fn), std::forward<B>(args)...)) {}
    // Movable until awaited (so gather and wait_for can take it).
    pool_call_awaiter(pool_call_awaiter&& o) noexcept
        : waiter(o.where), pool_(o.pool_), which_(o.which_), job_(std::exchange(o.job_, nullptr)) {}
    pool_call_awaiter& operator=(const pool_call_awaiter&) = delete;
    ~pool_call_awaiter() { release(); }

    bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> h) {
        if (!job_) throw std::logic_error("offload: an offloaded call can be awaited once");
        if (!arm(h)) return false;
        try {
            el_ = static_cast<event_loop*>(loop);
            if (which_ == pool_choice::default_thread_pool)
                pool_ = &el_->default_thread_pool();
            else if (which_ == pool_choice::default_executor)
                pool_ = &el_->default_executor();
            job_->loop = el_;
            job_->listener = this;
            bool admitted = pool_->admit(job_); // throws executor_closed
            el_->expect_remote(+1);
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
        if (closed_)
            throw executor_closed(fmt::format("offload::executor_closed: thread pool '{}' shut down before this "
                                              "call started; it never ran",
                                              pool_->name()));
        return static_cast<result_job<result_type>*>(job_)->take();
    }

    void cancel() noexcept override {
        switch (phase_) {
        case phase::waiting_slot:
            if (pool_->cancel_waiting(job_)) {
                finish_cancelled();
            } else { // the slot grant is on its way; give it back when it lands
                cancel_on_grant_ = true;
                disarm();
            }
            return;
        case phase::submitted:
            if (pool_->cancel_queued(job_)) { // never ran, never will
                finish_cancelled();
                return;
            }
            if (auto s = job_state::running;
                job_->state.compare_exchange_strong(s, job_state::abandoned, std::memory_order_acq_rel)) {
                job_->request_stop(); // the worker stays busy until the call returns
                job_->listener = nullptr;
                finish_cancelled();
                return;
            }
            // Finished (or dropped by shutdown): the outcome is on its way and
            // wins; the cancellation is thrown at the task's next await.
            disarm();
            if (ctx) ctx->cancel_pending = true;
            return;
        case phase::idle:
        case phase::done:
            return;
        }
    }

private:
    enum class phase { idle, waiting_slot, submitted, done };

    void submit(bool holds_pool_ref) noexcept {
        if (pool_->enqueue(job_, holds_pool_ref)) {
            phase_ = phase::submitted;
        } else {
            closed_ = true;
            phase_ = phase::done;
            el_->expect_remote(-1);
            wake();
        }
    }

    void finish_cancelled() noexcept {
        phase_ = phase::done;
        el_->expect_remote(-1);
        wake_cancelled();
    }

    void slot_granted() noexcept override {
        if (cancel_on_grant_) {
            pool_->return_slot(job_);
            phase_ = phase::done;
            el_->expect_remote(-1);
            wake_cancelled();
            return;
        }
        submit(true);
    }

    void job_finished() noexcept override {
        phase_ = phase::done;
        if (job_->closed) closed_ = true;
        if (cancel_on_grant_) cancelled = true;
        wake();
    }

    // The awaiting frame goes away (normally after completion; or torn down
    // with its loop while the call is still out): make sure nobody calls back.
    void release() noexcept {
        if (!job_) return;
        job_->listener = nullptr;
        if (phase_ == phase::waiting_slot) {
            if (pool_->cancel_waiting(job_)) el_->expect_remote(-1);
            // else: the grant in flight finds no listener and gives the slot back
        } else if (phase_ == phase::submitted) {
            if (pool_->cancel_queued(job_)) {
                el_->expect_remote(-1);
            } else if (auto s = job_state::running;
                       job_->state.compare_exchange_strong(s, job_state::abandoned, std::memory_order_acq_rel)) {
                job_->request_stop();
                el_->expect_remote(-1);
            }
            // else: finished; the completion in flight finds no listener
        }
        std::exchange(job_, nullptr)->unref();
    }

    thread_pool* pool_;
    pool_choice which_;
    pool_job* job_;
    event_loop* el_ = nullptr;
    phase phase_ = phase::idle;
    bool closed_ = false;
    bool cancel_on_grant_ = false;
};

} // namespace offload::detail
