// offload/task_handle.hpp — create_task and task_handle<T>: schedule a task on
// the running loop and keep a handle to await, cancel or inspect it, like an
// asyncio.Task. A task whose exception nobody retrieves is reported to the
// loop's exception handler when its last handle goes away; it is never lost.
#pragma once

#include <offload/detail/loop/core.hpp>
#include <offload/detail/tasks/awaitable_traits.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/task.hpp>

#include <functional>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>

namespace offload {

template <class T>
class task_handle;

namespace detail {
/// How the library's own layers reach the state behind a task_handle.
struct task_handle_access {
    template <class T>
    static task_handle<T> adopt(task_state<T>* st) noexcept {
        return task_handle<T>(st);
    }
    template <class T>
    static task_state<T>* state(const task_handle<T>& h) {
        return h.state();
    }
};
} // namespace detail

/// A reference to a scheduled task whatever its result type: what
/// current_task() returns, and the base of task_handle<T>. Copyable
/// (reference-counted); the task runs to completion whether or not references remain.
///
/// Thread safety: use it on its loop's thread only.
/// Cancellation: cancel() makes the task's current (or next) suspension point
/// throw cancelled_error; a task that returns before reaching one ends cancelled
/// anyway, so cancel()'s answer is never contradicted.
class task_ref {
public:
    task_ref() noexcept = default;
    /// Another reference to the same task.
    task_ref(const task_ref& o) noexcept : task_ref(o.st_) {}
    /// Takes over `o`'s reference; `o` becomes empty.
    task_ref(task_ref&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
    /// Refers to `o`'s task instead (copy or move).
    task_ref& operator=(task_ref o) noexcept {
        std::swap(st_, o.st_);
        return *this;
    }
    ~task_ref() {
        if (st_) st_->release();
    }

    /// Requests cancellation (asyncio's Task.cancel): returns false if the task
    /// already finished, true otherwise, and then the task does end by
    /// cancelled_error unless it catches it. A `message` reaches that
    /// cancelled_error's what().
    bool cancel(std::string message = {}) noexcept {
        if (!st_ || st_->done) return false;
        st_->request_cancel(std::move(message));
        return true;
    }
    /// Cancellation requests not yet taken back by uncancel() (asyncio's Task.cancelling).
    unsigned cancelling() const noexcept { return st_ ? st_->cancel_requests : 0; }
    /// Takes one cancellation request back; at zero, a request not yet
    /// delivered is withdrawn. Returns the requests that remain (asyncio's Task.uncancel).
    unsigned uncancel() noexcept { return st_ ? st_->uncancel() : 0; }
    /// True once the task finished: returned, threw or was cancelled (false when empty).
    bool done() const noexcept { return st_ && st_->done; }
    /// True if the task finished by cancelled_error.
    bool cancelled() const noexcept { return st_ && st_->cancelled(); }
    /// The name given to create_task (std::logic_error when empty).
    const std::string& name() const { return base_state()->name; }
    /// The exception the task ended with (null if none or not finished); marks it retrieved.
    std::exception_ptr exception() const noexcept {
        if (!done()) return nullptr;
        st_->mark_retrieved();
        return st_->exception();
    }
    /// True unless empty (default-constructed, moved from, or current_task() outside a task).
    explicit operator bool() const noexcept { return st_ != nullptr; }
    /// Two references to the same task compare equal.
    friend bool operator==(const task_ref& a, const task_ref& b) noexcept { return a.st_ == b.st_; }

protected:
    /// A new reference to `st` (for task_handle).
    explicit task_ref(detail::task_state_base* st) noexcept : st_(st) {
        if (st_) st_->retain();
    }
    /// The task's state; std::logic_error when empty.
    detail::task_state_base* base_state() const {
        if (!st_) throw std::logic_error("offload: empty task handle; assign it the result of create_task");
        return st_;
    }

private:
    friend task_ref current_task() noexcept;
    detail::task_state_base* st_ = nullptr;
};

/// The task whose step is running on this thread (asyncio.current_task), or an
/// empty task_ref outside any task. Example:
/// `log("{} stopping", current_task().name()); current_task().cancel("shutdown");`
inline task_ref current_task() noexcept {
    // Every running task context is the state create_task made (task_context.hpp).
    return task_ref(static_cast<detail::task_state_base*>(static_cast<detail::task_record*>(detail::tls.ctx)));
}

/// A scheduled task with a result of type T: a task_ref that can also be
/// awaited and asked for its result. Copyable (reference-counted).
///
/// Thread safety: use it on its loop's thread only.
/// Cancellation: as task_ref. A task awaiting this handle that gets cancelled
/// cancels this task too and waits for it to unwind.
template <class T = void>
class task_handle : public task_ref {
public:
    task_handle() noexcept = default;

    /// Awaits the task: its result, or its exception rethrown.
    detail::join_awaiter<T> operator co_await() const { return detail::join_awaiter<T>(state(), {}); }

    /// The result of a finished task (rethrows its exception); std::logic_error if it has not finished.
    T result() const {
        if (!done())
            throw std::logic_error("offload: task_handle::result() on a task that has not finished; co_await it");
        return state()->result();
    }

private:
    friend struct detail::task_handle_access;
    explicit task_handle(detail::task_state<T>* st) noexcept : task_ref(st) {}
    detail::task_state<T>* state() const { return static_cast<detail::task_state<T>*>(base_state()); }
};

/// Schedules `t` to run on the current loop and returns its handle.
/// Throws std::logic_error when no loop runs on this thread.
/// Example: `auto h = create_task(fetch(url), "fetch"); … auto v = co_await h;`
template <class T>
task_handle<T> create_task(task<T> t, std::string name = {}) {
    auto* st = detail::spawn(detail::loop_core::require_current("create_task"), std::move(t), std::move(name));
    return detail::task_handle_access::adopt(st);
}

namespace detail {
template <class F, class... A>
auto keep_alive(F f, A... args) -> std::invoke_result_t<F&, A&...> {
    co_return co_await std::invoke(f, args...);
}
} // namespace detail

/// Schedules the task returned by `fn(args...)`, keeping `fn` (and its
/// captures) and decay-copied `args` alive in the task's frame until it ends:
/// the safe form of `create_task([&] () -> task<> {...}())`.
template <class F, class... A>
    requires std::is_invocable_v<std::decay_t<F>&, std::decay_t<A>&...> &&
             detail::is_task_v<std::invoke_result_t<std::decay_t<F>&, std::decay_t<A>&...>>
auto create_task(F&& fn, A&&... args) {
    return create_task(
        detail::keep_alive(std::decay_t<F>(std::forward<F>(fn)), std::decay_t<A>(std::forward<A>(args))...));
}

namespace detail {
// What gather and wait_for accept, and how they schedule it.

template <class>
inline constexpr bool is_task_handle_v = false;
template <class T>
inline constexpr bool is_task_handle_v<task_handle<T>> = true;

/// What gather and wait_for accept: a task, a task handle or any awaitable.
template <class A>
concept gatherable = is_task_v<std::remove_cvref_t<A>> || is_task_handle_v<std::remove_cvref_t<A>> || awaitable<A>;

/// The value type an argument of gather/wait_for produces.
template <class A>
struct child_value {}; // not awaitable: no type (keeps overload resolution SFINAE-friendly)
template <class A>
    requires awaitable<A>
struct child_value<A> {
    using type = await_result_t<A>;
};
template <class T>
struct child_value<task<T>> {
    using type = T;
};
template <class T>
struct child_value<task_handle<T>> {
    using type = T;
};
template <class A>
using child_value_t = typename child_value<std::remove_cvref_t<A>>::type;

/// Schedules an argument of gather/wait_for as its own task (a handle passes through).
template <class A>
auto to_handle(A&& a) {
    using D = std::remove_cvref_t<A>;
    if constexpr (is_task_handle_v<D>)
        return D(std::forward<A>(a));
    else if constexpr (is_task_v<D>)
        return create_task(D(std::forward<A>(a)));
    else
        return create_task(as_task(D(std::forward<A>(a))));
}

template <class T>
value_or_monostate_t<T> take_result(const task_handle<T>& h) {
    if constexpr (std::is_void_v<T>) {
        h.result();
        return {};
    } else {
        return h.result();
    }
}

template <class T>
task_state_base* state_of(const task_handle<T>& h) {
    return task_handle_access::state(h);
}

} // namespace detail

} // namespace offload
