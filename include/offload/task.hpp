// offload/task.hpp — task<T>, the lazy coroutine type of offload.
// A task does nothing until it is awaited (or handed to create_task). Awaiting
// it runs it at once; if it finishes without suspending, the awaiter simply
// goes on, and if it suspends, its completion transfers control back to the
// awaiter symmetrically: a loop of awaits uses constant stack at any
// optimization level (g++ -O0 included), and a chain of nested awaits of any
// depth wherever the compiler makes symmetric transfer a tail call.
#pragma once

#include <offload/detail/loop/task_context.hpp>

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
struct task_access;

// How an awaited task gets back to its awaiter. Symmetric transfer (the
// awaiter resumes the child by returning its handle, the child resumes the
// awaiter the same way) is a tail call only where the compiler makes it one:
// not at g++ -O0 (CMake's Debug), where a loop of awaits grew the stack by two
// frames per iteration until it crashed. So the awaiter first runs the child
// with an ordinary call from await_ready, marked `inline_start`. A child that
// finishes before it ever suspends sets `inline_done` at its final suspend
// point and returns, and the awaiter goes on without suspending: constant
// stack at any optimization level. A child that suspended resumes its
// awaiter from its final suspend point by symmetric transfer. Only past
// `max_inline_depth` nested inline starts (a deep recursion of awaits) does
// the awaiter start the child by symmetric transfer instead, so that with
// tail calls even a million nested awaits use constant stack.
inline thread_local unsigned inline_depth = 0;
inline constexpr unsigned max_inline_depth = 256;

// The body of a scheduled task (create_task) is its root: no coroutine of its
// own drives it. The root's promise knows the task's record (`root`, in place
// of a continuation, which a root never has), and its final suspend point hands
// the outcome to the record, which destroys the frame and completes the task:
// one heap frame per scheduled task (the body's) besides its state. (Its first
// step, and the rule "cancelled before its first step: the body never runs",
// are task_state.hpp's: nothing here costs an awaited task anything.)
struct task_promise_base {
    union {
        std::coroutine_handle<> continuation{}; // an awaited task: whom to resume at the end
        task_record* root;                      // a root (is_root): the scheduled task it is the body of
    };
    std::exception_ptr exception;
    bool inline_start = false; // run by the awaiter's await_ready, which has not returned yet
    bool inline_done = false;  // finished while inline_start
    bool is_root = false;      // the body of a scheduled task (task_access::adopt_as_root)

    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            auto& p = h.promise();
            if (p.is_root) { // the record takes the outcome, destroys this frame and completes
                void* value = nullptr;
                if constexpr (requires { p.value; }) value = &p.value;
                p.root->finish_root(h, p.exception, value);
                return std::noop_coroutine();
            }
            if (p.inline_start) { // return into the awaiter's await_ready, which goes on
                p.inline_done = true;
                return std::noop_coroutine();
            }
            return p.continuation ? p.continuation : std::noop_coroutine();
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
    /// The coroutine promise (what makes a function returning task<T> a coroutine).
    using promise_type = detail::task_promise<T>;
    /// The result type.
    using value_type = T;

    task() noexcept = default;
    /// Owns the coroutine frame `h` (the promise's get_return_object calls it).
    explicit task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
    /// Takes over `o`'s coroutine; `o` becomes empty.
    task(task&& o) noexcept : h_(std::exchange(o.h_, {})), awaited_(o.awaited_) {}
    /// Destroys the coroutine held (if it never started, none of its body runs), then takes over `o`'s.
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

    /// What `co_await task` uses: starts the body (inline when the call depth
    /// allows, else by symmetric transfer) and gives its result.
    struct awaiter {
        /// The awaited task's coroutine.
        std::coroutine_handle<promise_type> h;
        /// True when the body already ran from await_ready() and is now suspended.
        bool started = false; // the child ran from await_ready and suspended

        /// Runs the body until it finishes (true: no suspension) or first suspends.
        bool await_ready() noexcept {
            if (detail::inline_depth >= detail::max_inline_depth) return false; // start by transfer
            auto& p = h.promise();
            p.inline_start = true;
            ++detail::inline_depth;
            h.resume(); // runs the child until it finishes or first suspends
            --detail::inline_depth;
            p.inline_start = false;
            if (p.inline_done) return true; // finished: no suspension at all
            started = true;
            return false;
        }
        /// Resumes `awaiting` when the body ends; starts the body if not started yet.
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
            h.promise().continuation = awaiting;
            // A started child resumes us when it finishes; otherwise start it now.
            return started ? std::noop_coroutine() : std::coroutine_handle<>(h);
        }
        /// The result, or the body's exception rethrown.
        T await_resume() { return h.promise().take(); }
    };

    /// Awaits the task (once: a second await, or one on an empty task, throws std::logic_error).
    awaiter operator co_await() & { return {claim()}; }
    /// Awaits a task temporary, as the lvalue form does.
    awaiter operator co_await() && { return {claim()}; }

private:
    friend struct detail::task_access;

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

/// Makes a task the body of a scheduled task (create_task, submit): takes its
/// frame out of `t` and binds its promise to `record`, which from now on owns
/// the frame (resumes it, destroys it at the end or at loop teardown). The
/// caller checked t.valid().
struct task_access {
    template <class T>
    static std::coroutine_handle<> adopt_as_root(task<T>& t, task_record* record) noexcept {
        auto h = std::exchange(t.h_, {});
        auto& p = h.promise();
        p.root = record;
        p.is_root = true;
        return h;
    }
};

template <class>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<task<T>> = true;
} // namespace detail

} // namespace offload
