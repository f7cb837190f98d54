// offload/detail/threads/call_batch.hpp — the awaiter behind gather of a vector
// of thread-pool awaitables (to_thread, run_in_executor): it starts every call
// itself and counts their completions, so a gathered call costs no task, no
// coroutine frame and no wait-list node of its own, and the calls bound for
// one pool are queued with a single worker wake-up.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/type_traits.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/waiter.hpp>
#include <offload/detail/threads/call_awaiter.hpp>
#include <offload/errors.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <source_location>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace offload::detail {

/// Waits for every call of `calls` (awaiters not yet awaited), which it
/// starts itself; the awaiters keep the calls and their results. Loop thread only.
template <class F, class... A>
class call_batch_awaiter final : public waiter, private call_op::owner {
public:
    using awaiter_type = thread_call_awaiter<F, A...>;
    using result_type = call_result_t<F, A...>;

    /// `keep_going`: every call runs to its end (return_exceptions); otherwise
    /// the first failure withdraws the others (queued ones never run, running
    /// ones are abandoned and asked to stop) and is rethrown.
    call_batch_awaiter(std::vector<awaiter_type>& calls, bool keep_going, std::source_location loc) noexcept
        : waiter(loc), calls_(calls), keep_going_(keep_going) {}
    call_batch_awaiter(const call_batch_awaiter&) = delete;
    call_batch_awaiter& operator=(const call_batch_awaiter&) = delete;

    bool await_ready() const noexcept { return calls_.empty(); }

    bool await_suspend(std::coroutine_handle<> h) {
        for (auto& c : calls_)
            if (!c.op_.call() || c.op_.started())
                throw std::logic_error("offload: an offloaded call can be awaited once (a gathered call was "
                                       "awaited or gathered before)");
        if (!arm(h)) return false;
        std::size_t started = 0;
        try {
            call_queue deferred{}; // the queue whose worker wake-up is still owed
            const clock::time_point stamp = clock::now(); // one clock read for the batch
            for (auto& c : calls_) {
                c.resolve_queue(*loop);
                call_queue q = c.op_.queue();
                if (deferred.target && (q.target != deferred.target || q.table != deferred.table)) {
                    deferred.flush();
                    deferred = {};
                }
                bool pending = c.op_.start(*loop, this, &stamp);
                ++started;
                if (pending) {
                    ++remaining_;
                    deferred = q;
                } else {
                    note_end(c.op_);
                }
                if (failure_ && !keep_going_) break;
            }
            if (deferred.target) deferred.flush();
        } catch (...) {
            for (std::size_t i = 0; i < started; ++i) calls_[i].op_.withdraw();
            remaining_ = 0;
            disarm();
            throw;
        }
        if (failure_ && !keep_going_) withdraw_all();
        if (remaining_ == 0) {
            disarm();
            return false;
        }
        return true;
    }

    /// cancel_rest: the values in order, or the first failure rethrown.
    std::vector<value_or_monostate_t<result_type>> values() {
        throw_if_cancelled();
        if (failure_) rethrow(*failure_);
        std::vector<value_or_monostate_t<result_type>> out;
        out.reserve(calls_.size());
        for (auto& c : calls_) {
            if constexpr (std::is_void_v<result_type>) {
                c.op_.template take<result_type>();
                out.emplace_back();
            } else {
                out.push_back(c.op_.template take<result_type>());
            }
        }
        return out;
    }

    /// keep_going: calls `sink(value)` or `sink(exception_ptr)` for each call, in order.
    template <class Sink>
    void outcomes(Sink&& sink) {
        throw_if_cancelled();
        for (auto& c : calls_) {
            std::exception_ptr e;
            if (c.op_.closed() || c.op_.call()->failed) {
                try {
                    rethrow(c.op_);
                } catch (...) {
                    e = std::current_exception();
                }
                sink(std::move(e));
            } else if constexpr (std::is_void_v<result_type>) {
                sink(value_or_monostate_t<result_type>{});
            } else {
                sink(c.op_.template take<result_type>());
            }
        }
    }

    void await_resume() const noexcept {}

    void cancel() noexcept override {
        withdraw_all();
        wake_cancelled();
    }

private:
    [[noreturn]] static void rethrow(call_op& op) {
        if (op.closed()) op.throw_closed();
        op.template take<result_type>(); // rethrows the call's exception
        std::terminate();                // unreachable: a failure has one
    }

    void note_end(call_op& op) noexcept {
        if (!failure_ && op.failed()) failure_ = &op;
    }

    void op_ended(call_op& op) noexcept override {
        --remaining_;
        note_end(op);
        if (failure_ && !keep_going_) {
            withdraw_all();
            wake();
        } else if (remaining_ == 0) {
            wake();
        }
    }

    void withdraw_all() noexcept {
        for (auto& c : calls_) c.op_.withdraw();
        remaining_ = 0;
    }

    std::vector<awaiter_type>& calls_;
    std::size_t remaining_ = 0;
    call_op* failure_ = nullptr;
    bool keep_going_;
};

} // namespace offload::detail
