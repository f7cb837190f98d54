// offload/detail/tasks/task_state.hpp — what create_task builds: a reference-counted
// task_state<T> (result, waiters, cancellation context) that owns the frame of
// the user's task<T>, made the root of the scheduled task (task.hpp): the loop
// resumes that frame directly, and its final suspend point hands the outcome to
// the state, which destroys the frame (and with it every frame it awaited) as
// soon as the task finishes; the state lives on while a task_handle refers to
// it. Two heap blocks per scheduled task: the state and the body's frame.
#pragma once

#include <offload/detail/base/config.hpp>
#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/base/type_traits.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/waiter.hpp>
#include <offload/errors.hpp>
#include <offload/task.hpp>

#include <coroutine>
#include <source_location>
#include <stdexcept>

#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>

namespace offload::detail {

/// Something to tell when a task finishes (an awaiter of a task_handle, gather, task_group).
struct done_listener : list_hook {
    /// Called once, on the loop thread, after the listener was unlinked.
    virtual void on_done() noexcept = 0;

protected:
    ~done_listener() { intrusive_list<done_listener>::erase(this); }
};

class task_state_base : public task_record {
public:
    task_state_base(loop_core& l, std::string n) {
        loop = &l; // the owner until the loop goes away (detach)
        name = std::move(n);
        l.tasks().push_back(this);
    }
    task_state_base(const task_state_base&) = delete;
    task_state_base& operator=(const task_state_base&) = delete;

    void retain() noexcept override { ++refs_; }
    void release() noexcept override {
        if (--refs_ == 0) delete this;
    }

    bool cancelled() const noexcept { return done && was_cancelled_; }
    bool failed() const noexcept { return done && exception_ && !was_cancelled_; }
    const std::exception_ptr& exception() const noexcept { return exception_; }
    loop_core* owner() const noexcept { return loop; }

    void add_listener(done_listener* l) noexcept { listeners_.push_back(l); }

    /// Rethrows the task's exception, if any; marks it retrieved.
    void rethrow_if_failed() {
        retrieved_ = true;
        if (exception_) std::rethrow_exception(exception_);
    }
    void mark_retrieved() noexcept { retrieved_ = true; }

    // runner side
    void set_exception(std::exception_ptr e) noexcept { exception_ = std::move(e); }
    /// The task ended: tells the listeners and hands the loop's reference back.
    void complete() noexcept;

    std::coroutine_handle<> runner; // the root frame (the user's task<T>) while the task runs

    /// The first step (root_starter): the frame to run, or, for a task
    /// cancelled before its first step, a noop after ending it cancelled.
    std::coroutine_handle<> start() noexcept;

protected:
    virtual ~task_state_base();

private:
    void abandon() noexcept override;
    void detach() noexcept override;
    void report_if_unobserved() noexcept;

    // (refs_ and the flags share one word: the state of a void task fits a
    // 176 B malloc chunk.)
    int refs_ = 1; // the loop's reference while the task runs
    bool was_cancelled_ = false;
    bool retrieved_ = false;
    std::exception_ptr exception_;
    intrusive_list<done_listener> listeners_;
};

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void task_state_base::complete() noexcept {
    done = true;
    waiter = nullptr;
    if (exception_) {
        try {
            std::rethrow_exception(exception_);
        } catch (const cancelled_error&) {
            was_cancelled_ = true;
        } catch (...) {
        }
    }
    while (done_listener* l = listeners_.pop_front()) l->on_done();
    loop->retire(this); // the loop's reference, dropped after this step
}

OFFLOAD_DECL task_state_base::~task_state_base() {
    report_if_unobserved();
    if (loop) intrusive_list<task_record>::erase(this);
}

OFFLOAD_DECL void task_state_base::abandon() noexcept {
    done = true;
    was_cancelled_ = true;
    if (runner) std::exchange(runner, {}).destroy();
    release(); // the loop's reference: this task will never complete
}

OFFLOAD_DECL std::coroutine_handle<> task_state_base::start() noexcept {
    if (!cancel_pending) return runner;
    // Cancelled before its first step: the body never runs (as in asyncio).
    try {
        throw_cancelled(this);
    } catch (...) {
        set_exception(std::current_exception());
    }
    std::exchange(runner, {}).destroy();
    complete();
    return std::noop_coroutine();
}

OFFLOAD_DECL void task_state_base::detach() noexcept {
    report_if_unobserved();
    intrusive_list<task_record>::erase(this);
    loop = nullptr;
}

OFFLOAD_DECL void task_state_base::report_if_unobserved() noexcept {
    if (loop && failed() && !retrieved_) {
        retrieved_ = true;
        loop->call_exception_handler({"exception of a task that nobody awaited", exception_, name});
    }
}

#endif // OFFLOAD_DEFINE_BODIES

template <class T>
class task_state final : public task_state_base {
public:
    using task_state_base::task_state_base;

    /// The result (copied, so several awaiters can read it; moved if T is move-only).
    T result() {
        rethrow_if_failed();
        if constexpr (!std::is_void_v<T>) {
            if constexpr (std::is_copy_constructible_v<T>) {
                return *value;
            } else {
                if (!value)
                    throw std::logic_error("offload: the move-only result of this task was already taken by an "
                                           "earlier await; await a move-only task's handle once");
                T v = std::move(*value);
                value.reset();
                return v;
            }
        }
    }

    /// The result, once the body returned (no room at all for a void task).
    [[no_unique_address]] std::conditional_t<std::is_void_v<T>, std::monostate, std::optional<T>> value;

private:
    void finish_root(std::coroutine_handle<> frame, std::exception_ptr& error,
                     [[maybe_unused]] void* result) noexcept override {
        std::exception_ptr e = std::move(error);
        if (!e) {
            if (cancel_pending) {
                // A request that arrived after the last await (cancel() on itself,
                // or from a callback while it ran) is not lost: the task ends
                // cancelled, as in asyncio, and its result is dropped.
                try {
                    throw_cancelled(this);
                } catch (...) {
                    e = std::current_exception();
                }
            } else if constexpr (!std::is_void_v<T>) {
                try {
                    value.emplace(std::move(**static_cast<std::optional<T>*>(result)));
                } catch (...) {
                    e = std::current_exception();
                }
            }
        }
        if (e) set_exception(std::move(e));
        runner = {};
        frame.destroy(); // the user's frames go now, before anyone is told
        complete();
    }
};

/// The first step of every scheduled task on this thread: one coroutine, which
/// the loop resumes as that step (tls.ctx is the task) and which either hands
/// over to the task's root frame by symmetric transfer or, for a task cancelled
/// before its first step, ends it without running the body. A scheduled task
/// thus needs no driving frame of its own, and an awaited task<T> pays
/// nothing for the rule.
class root_starter {
public:
    root_starter() = default;
    root_starter(const root_starter&) = delete;
    root_starter& operator=(const root_starter&) = delete;
    ~root_starter() {
        if (h_) h_.destroy();
    }

    /// This thread's starter (made on first use; suspended whenever no step runs it).
    static std::coroutine_handle<> get() {
        static thread_local root_starter s;
        if (!s.h_) [[unlikely]]
            s.h_ = run().h;
        return s.h_;
    }

private:
    struct frame {
        struct promise_type {
            frame get_return_object() noexcept { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
            std::suspend_always initial_suspend() const noexcept { return {}; }
            std::suspend_always final_suspend() const noexcept { return {}; }
            void return_void() const noexcept {}
            void unhandled_exception() const noexcept { std::terminate(); } // start() is noexcept
        };
        std::coroutine_handle<promise_type> h;
    };
    struct next_task {
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<>) const noexcept {
            return static_cast<task_state_base*>(static_cast<task_record*>(tls.ctx))->start();
        }
        void await_resume() const noexcept {}
    };
    static frame run() {
        for (;;) co_await next_task{};
    }

    std::coroutine_handle<> h_;
};

/// Schedules `t` on `loop`; the returned state holds one reference (the loop's).
template <class T>
task_state<T>* spawn(loop_core& loop, task<T> t, std::string name) {
    loop.check_thread("create_task");
    if (!t.valid())
        throw std::logic_error("offload: create_task was given an empty or already awaited task; pass the task "
                               "that the coroutine call returned, once");
    auto* st = new task_state<T>(loop, std::move(name));
    st->runner = task_access::adopt_as_root(t, st);
    loop.schedule(st, root_starter::get());
    return st;
}

/// Awaits the end of a task, whatever its outcome (the outcome stays
/// unretrieved). Cancelling the awaiting task cancels the awaited one and
/// keeps waiting for it to unwind (asyncio semantics).
struct done_awaiter : waiter, done_listener {
    task_state_base* st;
    done_awaiter(task_state_base* s, std::source_location loc) : waiter(loc), st(s) {}
    done_awaiter(const done_awaiter&) = delete;
    done_awaiter& operator=(const done_awaiter&) = delete;

    bool await_ready() const noexcept { return st->done; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!arm(h)) {
            // A cancellation was pending when we started to wait: as asyncio
            // does, it goes to the awaited task, and we wait for that to end
            // (its cancelled_error, or its result if it ignores the request).
            cancelled = false;
            ctx->waiter = this;
            ctx->suspended_at = where;
            st->request_cancel();
        }
        st->add_listener(this);
        return true;
    }
    void await_resume() const { throw_if_cancelled(); }
    void on_done() noexcept override { wake(); }
    void cancel() noexcept override { st->request_cancel(); }
};

/// Awaits a task_state and gives its result (or rethrows its exception).
template <class T>
struct join_awaiter final : done_awaiter {
    join_awaiter(task_state<T>* s, std::source_location loc) : done_awaiter(s, loc) {}
    T await_resume() {
        throw_if_cancelled();
        return static_cast<task_state<T>*>(st)->result();
    }
};

} // namespace offload::detail
