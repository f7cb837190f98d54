// offload/task.hpp — task<T>, the lazy coroutine type of offload.
// A task does nothing until it is awaited (or handed to create_task); awaiting
// it transfers control symmetrically, and its completion transfers control back
// to the awaiter the same way, so chains of any depth use constant stack.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace offload {

template <class T = void>
class task;

namespace detail {

struct task_promise_base {
    std::coroutine_handle<> continuation;
    std::exception_ptr exception;

    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            auto& c = h.promise().continuation;
            return c ? c : std::noop_coroutine();
        }
        void await_resume() const noexcept {}
    };

    std::suspend_always initial_suspend() const noexcept { return {}; }
    final_awaiter final_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept { exception = std::current_exception(); }

    void rethrow_if_failed() const {
        if (exception) std::rethrow_exception(exception);
    }
};

template <class T>
struct task_promise : task_promise_base {
    std::optional<T> value;

    task<T> get_return_object() noexcept;
    template <class U = T>
        requires std::is_convertible_v<U&&, T>
    void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        value.emplace(std::forward<U>(v));
    }
    T take() {
        rethrow_if_failed();
        return std::move(*value);
    }
};

template <>
struct task_promise<void> : task_promise_base {
    task<void> get_return_object() noexcept;
    void return_void() const noexcept {}
    void take() const { rethrow_if_failed(); }
};

} // namespace detail

/// A lazy, move-only coroutine producing a T (or an exception).
///
/// The body starts when the task is awaited; `co_await t` (or
/// `co_await std::move(t)`) gives the result or rethrows the exception. A task
/// can be awaited once. Destroying a task that never started destroys its frame
/// without running any of the body.
///
/// Thread safety: none; a task belongs to the coroutine that awaits it.
/// Cancellation: a task runs inside the scheduled task (create_task) that
/// awaits it and is cancelled together with it.
/// Example: `task<int> answer() { co_return 42; }` … `int v = co_await answer();`
template <class T>
class [[nodiscard]] task {
public:
    using promise_type = detail::task_promise<T>;
    using value_type = T;

    task() noexcept = default;
    explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
    task(task&& o) noexcept : h_(std::exchange(o.h_, {})), awaited_(o.awaited_) {}
    task& operator=(task&& o) noexcept {
        if (this != &o) {
            destroy();
            h_ = std::exchange(o.h_, {});
            awaited_ = o.awaited_;
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { destroy(); }

    /// True while the task holds a coroutine that has not been awaited yet.
    bool valid() const noexcept { return h_ && !awaited_; }

    struct awaiter {
        std::coroutine_handle<promise_type> h;
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
            h.promise().continuation = awaiting;
            return h;
        }
        T await_resume() { return h.promise().take(); }
    };

    awaiter operator co_await() & { return {claim()}; }
    awaiter operator co_await() && { return {claim()}; }

private:
    std::coroutine_handle<promise_type> claim() {
        if (!h_)
            throw std::logic_error("offload: co_await on an empty task (moved-from or default-constructed); "
                                   "await the task object that the coroutine call returned");
        if (awaited_)
            throw std::logic_error("offload: this task was already awaited; a task<T> runs once and can be "
                                   "awaited once. Use create_task(...) for a handle that many can await");
        awaited_ = true;
        return h_;
    }

    void destroy() noexcept {
        if (h_) std::exchange(h_, {}).destroy();
    }

    std::coroutine_handle<promise_type> h_;
    bool awaited_ = false;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
    return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
    return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

template <class>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<task<T>> = true;
} // namespace detail

} // namespace offload
