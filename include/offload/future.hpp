// offload/future.hpp — future<T> (asyncio.Future): a loop-local result slot
// that any number of tasks await, settled once by whoever holds it (a
// callback, another task) or by an executor: submit(executor, fn, args...)
// hands a call to the executor at once and returns its future (the
// overloads sit beside run_in_executor in <offload/to_thread.hpp> and
// <offload/process_pool.hpp>). A future's error that nobody retrieved goes to
// the loop's exception handler when its last handle goes away.
#pragma once

#include <offload/detail/base/config.hpp>
#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/base/type_traits.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/task_context.hpp>
#include <offload/detail/tasks/list_waiter.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/errors.hpp>
#include <offload/task.hpp>

#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace offload {

template <class T = void>
class future;

namespace detail {

class future_state_base;

/// A task awaiting a future: the node of the future's wait list. It holds a
/// reference to the state, so a future may be awaited as a temporary.
struct future_waiter : list_waiter<future_waiter> {
    future_state_base* st;

    future_waiter(future_state_base* s, std::source_location loc) noexcept;
    future_waiter(future_waiter&& o) noexcept : list_waiter(std::move(o)), st(std::exchange(o.st, nullptr)) {}
    ~future_waiter();

    bool await_ready() const noexcept;
    bool await_suspend(std::coroutine_handle<> h);
    /// The awaiting task is cancelled: as in asyncio, that cancels the future
    /// itself, which wakes every task awaiting it with cancelled_error.
    void cancel() noexcept override;
};

/// The state behind future<T> handles: status, error, waiters, and (for a
/// future that submit() returned) the task that drives the executor call.
/// Loop-local: a plain reference count, no atomics.
class future_state_base {
public:
    future_state_base() noexcept = default;
    future_state_base(const future_state_base&) = delete;
    future_state_base& operator=(const future_state_base&) = delete;

    void retain() noexcept { ++refs_; }
    void release() noexcept {
        if (--refs_ == 0) delete this;
    }

    bool done() const noexcept { return status_ != status::pending; }
    bool cancelled() const noexcept { return status_ == status::cancelled; }
    bool failed() const noexcept { return status_ == status::failed; }

    /// asyncio's Future.cancel(): false if already done; otherwise the future
    /// is cancelled now, its waiters wake with cancelled_error, and a call it
    /// drives is cancelled by its executor's rules.
    bool cancel() noexcept;
    /// set_exception() of the public API: std::logic_error if done, std::invalid_argument if null.
    void set_exception(std::exception_ptr e);
    /// The driving side: fails a pending future; false (and nothing happens) if it is done.
    bool try_fail(std::exception_ptr e) noexcept;
    /// Throws std::logic_error naming `what` unless the future is pending.
    void require_pending(const char* what) const;
    /// A finished future: rethrows its error (cancelled_error if cancelled); marks it retrieved.
    void rethrow_if_failed();
    /// The error of a finished future (cancelled_error if cancelled), null if none; marks it retrieved.
    std::exception_ptr exception() noexcept;
    void mark_retrieved() noexcept { retrieved_ = true; }

    void add_waiter(future_waiter* w) noexcept { waiters_.push_back(w); }
    /// In debug mode, std::logic_error when called off the loop of the tasks waiting.
    void check_thread(const char* what) const { check_waiters_thread(waiters_, what); }
    /// submit(): `d` is the task that drives the call (one reference is kept).
    void attach_driver(task_state_base* d) noexcept;

protected:
    virtual ~future_state_base();
    /// The value was stored: the future is done, its waiters wake.
    void settle_value() noexcept;

private:
    enum class status : std::uint8_t { pending, has_value, failed, cancelled };
    void report_if_unobserved() noexcept;

    int refs_ = 1;
    status status_ = status::pending;
    bool retrieved_ = false;
    std::exception_ptr error_;
    task_state_base* driver_ = nullptr;
    intrusive_list<future_waiter> waiters_;
};

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL future_waiter::future_waiter(future_state_base* s, std::source_location loc) noexcept
    : list_waiter(loc), st(s) {
    st->retain();
}

OFFLOAD_DECL future_waiter::~future_waiter() {
    unlink(); // first: releasing may destroy the state and its list
    if (st) st->release();
}

OFFLOAD_DECL bool future_waiter::await_ready() const noexcept { return st->done(); }

OFFLOAD_DECL bool future_waiter::await_suspend(std::coroutine_handle<> h) {
    st->check_thread("co_await future"); // before arm(): a throw leaves the task unregistered
    if (!arm(h)) {
        // A cancellation was pending when the task came to wait: as in asyncio,
        // it goes to the future, and this await throws cancelled_error.
        st->cancel();
        return false;
    }
    st->add_waiter(this);
    return true;
}

OFFLOAD_DECL void future_waiter::cancel() noexcept {
    // Still waiting: the future is pending (a woken waiter is unlinked and no
    // longer the task's waiter, so its cancellation stays pending instead).
    if (linked()) st->cancel();
}

OFFLOAD_DECL bool future_state_base::cancel() noexcept {
    if (done()) return false;
    status_ = status::cancelled;
    while (future_waiter* w = waiters_.pop_front()) w->wake_cancelled();
    // The call behind a submitted future: a queued one is dropped and never
    // runs, a running one follows its executor's rules (see submit).
    if (driver_ && !driver_->done) driver_->request_cancel();
    return true;
}

OFFLOAD_DECL void future_state_base::require_pending(const char* what) const {
    if (!done()) return;
    throw std::logic_error(std::string("offload: ") + what + " on a future that is already " +
                           (cancelled() ? "cancelled" : "done") +
                           "; a future is settled once. Check done() first (asyncio code does the same with "
                           "`if not fut.done()`), or make a new future");
}

OFFLOAD_DECL void future_state_base::set_exception(std::exception_ptr e) {
    check_thread("future::set_exception");
    if (!e)
        throw std::invalid_argument("offload: future::set_exception was given a null exception_ptr; pass "
                                    "std::current_exception() or std::make_exception_ptr(error)");
    require_pending("future::set_exception");
    try_fail(std::move(e));
}

OFFLOAD_DECL bool future_state_base::try_fail(std::exception_ptr e) noexcept {
    if (done()) return false;
    error_ = std::move(e);
    status_ = status::failed;
    while (future_waiter* w = waiters_.pop_front()) w->wake();
    return true;
}

OFFLOAD_DECL void future_state_base::settle_value() noexcept {
    status_ = status::has_value;
    while (future_waiter* w = waiters_.pop_front()) w->wake();
}

OFFLOAD_DECL void future_state_base::rethrow_if_failed() {
    retrieved_ = true;
    if (status_ == status::cancelled) throw cancelled_error();
    if (status_ == status::failed) std::rethrow_exception(error_);
}

OFFLOAD_DECL std::exception_ptr future_state_base::exception() noexcept {
    retrieved_ = true;
    if (status_ == status::cancelled) return std::make_exception_ptr(cancelled_error());
    return status_ == status::failed ? error_ : nullptr;
}

OFFLOAD_DECL void future_state_base::attach_driver(task_state_base* d) noexcept {
    d->retain();
    driver_ = d;
}

OFFLOAD_DECL future_state_base::~future_state_base() {
    waiters_.clear(); // empty: every waiter holds a reference
    report_if_unobserved();
    if (driver_) driver_->release();
}

OFFLOAD_DECL void future_state_base::report_if_unobserved() noexcept {
    if (status_ != status::failed || retrieved_) return;
    retrieved_ = true;
    const char* msg = driver_ ? "exception of a submitted call that nobody awaited"
                              : "exception of a future that nobody retrieved";
    // Futures are loop-local, so the loop running on this thread is the
    // future's; with none (the last handle dropped outside any loop) the
    // report goes where the loop's default handler sends it.
    if (loop_core* l = loop_core::current()) {
        l->call_exception_handler({msg, error_, {}});
        return;
    }
    std::string what = "unknown exception";
    try {
        std::rethrow_exception(error_);
    } catch (const std::exception& e) {
        what = e.what();
    } catch (const cancelled_error& e) {
        what = e.what();
    } catch (...) {
    }
    std::fprintf(stderr, "offload: %s: %s\n", msg, what.c_str());
}

#endif // OFFLOAD_DEFINE_BODIES

template <class T>
class future_state final : public future_state_base {
public:
    /// Stores the value and wakes the waiters; false (nothing stored) if already done.
    template <class... U>
    bool try_set_value(U&&... v) {
        if (done()) return false;
        value_.emplace(std::forward<U>(v)...);
        settle_value();
        return true;
    }

    /// The result of a finished future: copied, so several awaiters can read
    /// it; a move-only one moves out to the first taker.
    T result() {
        rethrow_if_failed();
        if constexpr (!std::is_void_v<T>) {
            if constexpr (std::is_copy_constructible_v<T>) {
                return *value_;
            } else {
                if (!value_)
                    throw std::logic_error("offload: the move-only result of this future was already taken by an "
                                           "earlier await or result(); take a move-only future's result once");
                T v = std::move(*value_);
                value_.reset();
                return v;
            }
        }
    }

private:
    std::optional<value_or_monostate_t<T>> value_;
};

template <class T>
struct future_awaiter final : future_waiter {
    using future_waiter::future_waiter;
    T await_resume() {
        throw_if_cancelled();
        return static_cast<future_state<T>*>(st)->result();
    }
};

/// How the library's own layers reach the state behind a future.
struct future_access {
    template <class T>
    static future<T> adopt(future_state<T>* st) noexcept {
        return future<T>(st);
    }
};

// --- submit: a lazy executor awaitable, started at once, settles a future --------------

/// The driving task's reference to its future. If the task goes away without
/// settling it (its frame torn down with the loop, or never started) the
/// future is cancelled, so it always ends exactly once.
template <class T>
struct driver_ref {
    future_state<T>* st;
    explicit driver_ref(future_state<T>* s) noexcept : st(s) {}
    driver_ref(driver_ref&& o) noexcept : st(std::exchange(o.st, nullptr)) {}
    driver_ref& operator=(const driver_ref&) = delete;
    ~driver_ref() {
        if (!st) return;
        st->cancel();
        st->release();
    }
};

/// The body of a submitted call's task: awaits the executor's own awaiter
/// (the one run_in_executor returns) and settles the future with its outcome.
template <class T, class Awaiter>
task<> drive_future(driver_ref<T> ref, Awaiter aw) {
    future_state<T>* st = ref.st;
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(aw);
            st->try_set_value();
        } else {
            st->try_set_value(co_await std::move(aw));
        }
    } catch (const cancelled_error&) {
        st->cancel(); // the driving task was cancelled (run() ending, say)
    } catch (...) {
        st->try_fail(std::current_exception());
    }
}

/// Starts `aw` (a lazy executor awaitable) now and returns the future of its
/// result. The driving task is a real task of the loop, so leftovers
/// cancellation (run) and loop teardown treat it like any other; its first
/// step runs here, inside the caller's step, so the call reaches the executor
/// before this returns. A refusal at submission (executor_closed,
/// broken_executor) is thrown from here, as asyncio's run_in_executor does.
template <class T, class Awaiter>
future<T> start_future(Awaiter aw) {
    loop_core& loop = loop_core::require_current("offload::submit");
    auto* st = new future_state<T>;
    future<T> f = future_access::adopt(st); // takes the first reference
    st->retain();                           // the driving task's
    task<> body = drive_future<T, Awaiter>(driver_ref<T>(st), std::move(aw));
    auto* ts = new task_state<void>(loop, "offload::submit");
    ts->runner = task_access::adopt_as_root(body, ts);
    st->attach_driver(ts);
    {
        // The driving task's first step, as that task (its awaiter registers
        // with it), until the executor has the call.
        struct restore {
            thread_state saved = tls;
            ~restore() {
                tls.ctx = saved.ctx;
                tls.resumed_at = saved.resumed_at;
            }
        } r;
        tls.ctx = ts;
        ts->runner.resume();
    }
    // Nothing completes a call within its first step but a refusal: rethrow it.
    if (st->failed()) st->rethrow_if_failed();
    return f;
}

} // namespace detail

/// A loop-local, awaitable result slot (asyncio.Future): settled once with a
/// value (set_result), an error (set_exception) or a cancellation (cancel);
/// every task awaiting it then resumes with that outcome. submit() returns
/// one for an executor call that has already started.
///
/// A copyable handle to a reference-counted state: copies refer to the same
/// future, and several tasks may await it. A default-constructed future is a
/// new pending one; a moved-from handle is empty (std::logic_error on use).
/// An error that nobody retrieved (by awaiting, result() or exception()) goes
/// to the loop's exception handler when the last handle goes away.
///
/// Thread safety: loop-local; not thread-safe (from another thread, go
/// through event_loop::call_soon_threadsafe). In debug mode a call from
/// another thread while tasks wait on it throws std::logic_error.
/// Cancellation (as asyncio): cancelling a task that awaits a future cancels
/// the future itself, so every task awaiting it gets cancelled_error (copy
/// the future into its own task and await that task to shield it); a
/// cancellation already pending when a task starts to await does the same.
/// cancel() on a future that submit() returned also cancels its call, by the
/// executor's rules.
/// Example:
/// ```
/// future<int> answer;
/// loop.call_later(10ms, [answer]() mutable { answer.set_result(42); });
/// int v = co_await answer;
/// ```
template <class T>
class future {
public:
    /// The result type.
    using value_type = T;

    /// A new pending future.
    future() : st_(new detail::future_state<T>) {}
    /// Another reference to the same result slot (every copy sees one result).
    future(const future& o) noexcept : st_(o.st_) {
        if (st_) st_->retain();
    }
    /// Takes over `o`'s slot; `o` becomes empty.
    future(future&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
    /// Refers to `o`'s slot instead.
    future& operator=(future o) noexcept {
        std::swap(st_, o.st_);
        return *this;
    }
    ~future() {
        if (st_) st_->release();
    }

    /// Settles the future with `v` and wakes its waiters (they resume in the
    /// order they waited). std::logic_error if it is already done or cancelled.
    template <class U = T>
        requires(!std::is_void_v<T> && std::is_constructible_v<T, U &&>)
    void set_result(U&& v) {
        auto* s = state();
        s->check_thread("future::set_result");
        s->require_pending("future::set_result");
        s->try_set_value(std::forward<U>(v));
    }
    /// future<void>: settles the future and wakes its waiters.
    void set_result()
        requires std::is_void_v<T>
    {
        auto* s = state();
        s->check_thread("future::set_result");
        s->require_pending("future::set_result");
        s->try_set_value();
    }

    /// Settles the future with an error that awaiting it rethrows.
    /// std::logic_error if it is already done; std::invalid_argument if `e` is null.
    void set_exception(std::exception_ptr e) { state()->set_exception(std::move(e)); }
    /// Settles the future with `e` (any exception object).
    template <class E>
        requires(!std::is_same_v<std::decay_t<E>, std::exception_ptr>)
    void set_exception(E&& e) {
        set_exception(std::make_exception_ptr(std::forward<E>(e)));
    }

    /// Cancels a pending future: its waiters resume with cancelled_error, and
    /// the call behind a submitted future is cancelled (a queued one never
    /// runs). Returns false (and does nothing) if it is already done.
    bool cancel() noexcept { return st_ && st_->cancel(); }

    /// True once it has a result, an error, or was cancelled.
    bool done() const noexcept { return st_ && st_->done(); }
    /// True if it was cancelled.
    bool cancelled() const noexcept { return st_ && st_->cancelled(); }

    /// The result of a finished future, or its error rethrown (cancelled_error
    /// if cancelled); std::logic_error if it is not done yet (co_await it).
    T result() const {
        auto* s = state();
        if (!s->done())
            throw std::logic_error("offload: future::result() on a future that is not done yet; co_await it");
        return s->result();
    }
    /// The error of a finished future (a cancelled_error if it was cancelled),
    /// null if it has a value or is not done; marks the error retrieved.
    std::exception_ptr exception() const noexcept {
        if (!done()) return nullptr;
        return st_->exception();
    }

    /// Awaits the future: its value, or its error rethrown.
    detail::future_awaiter<T> operator co_await() const { return detail::future_awaiter<T>(state(), {}); }

private:
    friend struct detail::future_access;
    explicit future(detail::future_state<T>* st) noexcept : st_(st) {}
    detail::future_state<T>* state() const {
        if (!st_) throw std::logic_error("offload: this future handle is empty (moved from); use a live copy");
        return st_;
    }

    detail::future_state<T>* st_;
};

} // namespace offload
