// offload/run_coroutine_threadsafe.hpp — run_coroutine_threadsafe(loop, task)
// (asyncio.run_coroutine_threadsafe): from any thread, schedule a task on an
// event loop running elsewhere and get a std::future of its result. The task
// travels through the loop's lock-free remote queue (call_soon_threadsafe);
// the std::future is always settled, also when the loop never runs the task.
#pragma once

#include <offload/errors.hpp>
#include <offload/event_loop.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <exception>
#include <future>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace offload {

namespace detail {

/// The std::promise of a run_coroutine_threadsafe call: settled once; if it
/// goes away unsettled (the loop was destroyed before it ran the task, or
/// while the task was suspended) it settles with executor_closed.
template <class T>
class threadsafe_promise {
public:
    explicit threadsafe_promise(std::promise<T> p) noexcept : p_(std::move(p)) {}
    threadsafe_promise(threadsafe_promise&& o) noexcept : p_(std::move(o.p_)), armed_(std::exchange(o.armed_, false)) {}
    threadsafe_promise& operator=(const threadsafe_promise&) = delete;
    ~threadsafe_promise() {
        if (!armed_) return;
        try {
            p_.set_exception(std::make_exception_ptr(
                executor_closed("offload::executor_closed: run_coroutine_threadsafe: the event loop was destroyed "
                                "before the task finished (it never ran, or was torn down while suspended); keep "
                                "the loop running until the std::future is ready")));
        } catch (...) { // settled meanwhile: nothing to do
        }
    }

    template <class... U>
    void set_value(U&&... v) {
        armed_ = false;
        p_.set_value(std::forward<U>(v)...);
    }
    void set_exception(std::exception_ptr e) {
        armed_ = false;
        p_.set_exception(std::move(e));
    }

private:
    std::promise<T> p_;
    bool armed_ = true;
};

/// The task scheduled on the loop: runs `t` and settles the promise with its outcome.
template <class T>
task<> run_threadsafe(task<T> t, threadsafe_promise<T> p) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(t);
            p.set_value();
        } else {
            p.set_value(co_await std::move(t));
        }
    } catch (...) {
        p.set_exception(std::current_exception());
    }
}

} // namespace detail

/// Schedules `t` as a task on `loop` from any thread and returns a
/// std::future of its result (or exception, with its type).
///
/// Thread safety: callable from any thread; `loop` must exist for the
/// duration of this call (not be being destroyed). The task itself runs on
/// the loop's thread, like any task created there (named
/// "run_coroutine_threadsafe"), once the loop runs.
/// Outcomes: the task's value or exception; cancelled_error if it is
/// cancelled (run() cancels leftover tasks when its main task ends);
/// executor_closed if the loop is destroyed before it ran or finished the
/// task. A loop that stops and is neither run again nor destroyed leaves the
/// std::future pending: the task waits in its queue.
/// Do not wait on the std::future on the loop's own thread (it deadlocks:
/// the loop cannot run the task while you block it); co_await there instead.
/// Cancellation: none beyond std::future's (a dropped std::future does not
/// stop the task).
/// Example: `std::future<int> f = run_coroutine_threadsafe(loop, compute(7)); int v = f.get();`
template <class T>
std::future<T> run_coroutine_threadsafe(event_loop& loop, task<T> t) {
    if (!t.valid())
        throw std::logic_error("offload: run_coroutine_threadsafe was given an empty or already awaited task; pass "
                               "the task that the coroutine call returned, once");
    std::promise<T> p;
    std::future<T> f = p.get_future();
    // Built here, started there: if the loop drops the posted callback unrun,
    // the unstarted frame is destroyed and its promise settles.
    loop.call_soon_threadsafe(
        [body = detail::run_threadsafe<T>(std::move(t), detail::threadsafe_promise<T>(std::move(p)))]() mutable {
            create_task(std::move(body), "run_coroutine_threadsafe");
        });
    return f;
}

} // namespace offload
