// offload/detail/threads/call_queue.hpp — where the call awaiter sends a
// thread call: a table of the operations it needs (admission, queueing,
// withdrawal) over a target. A thread_pool_core is one target; an executor
// of the user's, fed through executor_work, is another. One awaiter serves
// both, through one indirect call per operation.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/threads/call.hpp>
#include <offload/detail/threads/pool_core.hpp>
#include <offload/executor.hpp>

#include <fmt/core.h>

#include <atomic>
#include <exception>
#include <string>

namespace offload::detail {

struct call_queue {
    struct ops {
        /// Counts a submission; false when the call must wait for a queue slot.
        /// Throws executor_closed when the executor takes no more calls.
        bool (*admit)(void* target, thread_call* c);
        /// Queues an admitted call; false (executor_closed) if it closed since.
        /// `batch`: one of a batch queued at *batch; wake no worker for it yet, flush() will.
        bool (*enqueue)(void* target, thread_call* c, bool holds_ref, const clock::time_point* batch);
        /// Wakes a worker, if one sleeps, for calls queued with defer_wake.
        void (*flush)(void* target) noexcept;
        /// Withdraws a call waiting for a slot; false if the grant is on its way.
        bool (*cancel_waiting)(void* target, thread_call* c) noexcept;
        /// Withdraws a queued call; false if it started (or was dropped).
        bool (*cancel_queued)(void* target, thread_call* c) noexcept;
        /// A call granted a slot will not be queued after all.
        void (*return_slot)(void* target, thread_call* c) noexcept;
        /// What executor_closed says this executor is ("thread pool 'x'").
        std::string (*describe)(void* target);
    };

    const ops* table = nullptr;
    void* target = nullptr;

    bool admit(thread_call* c) const { return table->admit(target, c); }
    bool enqueue(thread_call* c, bool holds_ref, const clock::time_point* batch = nullptr) const {
        return table->enqueue(target, c, holds_ref, batch);
    }
    void flush() const noexcept { table->flush(target); }
    bool cancel_waiting(thread_call* c) const noexcept { return table->cancel_waiting(target, c); }
    bool cancel_queued(thread_call* c) const noexcept { return table->cancel_queued(target, c); }
    void return_slot(thread_call* c) const noexcept { table->return_slot(target, c); }
    std::string describe() const { return table->describe(target); }
};

inline constexpr call_queue::ops thread_pool_queue_ops{
    [](void* t, thread_call* c) { return static_cast<thread_pool_core*>(t)->admit(c); },
    [](void* t, thread_call* c, bool held, const clock::time_point* batch) {
        return static_cast<thread_pool_core*>(t)->enqueue(c, held, batch);
    },
    [](void* t) noexcept { static_cast<thread_pool_core*>(t)->wake_for_queued(); },
    [](void* t, thread_call* c) noexcept { return static_cast<thread_pool_core*>(t)->cancel_waiting(c); },
    [](void* t, thread_call* c) noexcept { return static_cast<thread_pool_core*>(t)->cancel_queued(c); },
    [](void* t, thread_call* c) noexcept { static_cast<thread_pool_core*>(t)->return_slot(c); },
    [](void* t) { return fmt::format("thread pool '{}'", static_cast<thread_pool_core*>(t)->name()); },
};

/// The queue of a thread pool.
inline call_queue queue_of(thread_pool_core& pool) noexcept { return {&thread_pool_queue_ops, &pool}; }

// An executor of the user's: every call is handed over at once as an
// executor_work (no admission, no slots); withdrawing a queued call is a CAS
// on its state, and the work then does nothing when run.
template <class E>
inline constexpr call_queue::ops user_executor_queue_ops{
    [](void*, thread_call*) { return true; },
    [](void* t, thread_call* c, bool, const clock::time_point*) {
        c->state.store(call_state::queued, std::memory_order_relaxed);
        c->refs.fetch_add(1, std::memory_order_relaxed); // the work's reference
        try {
            static_cast<E*>(t)->execute(executor_work_access::adopt(c));
        } catch (...) {
            // The work was destroyed unrun on the way out, which resolves the
            // call with executor_closed: say why instead (loop thread only now).
            if (c->state.load(std::memory_order_acquire) == call_state::dropped && !c->error)
                c->error = std::current_exception();
        }
        return true;
    },
    [](void*) noexcept {},
    [](void*, thread_call*) noexcept { return false; },
    [](void*, thread_call* c) noexcept {
        auto expected = call_state::queued;
        return c->state.compare_exchange_strong(expected, call_state::dropped, std::memory_order_acq_rel);
    },
    [](void*, thread_call* c) noexcept { c->unref(); },
    [](void*) { return std::string("the executor"); },
};

/// The queue of an executor of the user's.
template <class E>
call_queue queue_of_user_executor(E& ex) noexcept {
    return {&user_executor_queue_ops<E>, &ex};
}

} // namespace offload::detail
