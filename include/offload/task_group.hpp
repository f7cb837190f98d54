// offload/task_group.hpp — task_group, structured concurrency as in
// asyncio.TaskGroup: tasks created in the group are awaited together by
// wait(); the first child to fail cancels its siblings and the task that owns
// the group (so its body stops at its next await), and its exception is
// rethrown from wait() once every child has ended. with_task_group(body) is
// the `async with TaskGroup()` form that always reaches wait().
#pragma once

#include <offload/detail/tasks/children_awaiter.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <type_traits>
#include <vector>

namespace offload {

class task_group;
namespace detail {
template <class R, class F>
task<R> run_with_task_group(F body, std::source_location loc);
} // namespace detail

/// A scope for tasks. Always `co_await tg.wait()` before the group goes away;
/// a group destroyed with children still running cancels them (it cannot wait).
///
/// The task that constructs the group owns it. When a child fails, the group
/// cancels the other children and the owner too, as asyncio's TaskGroup: the
/// owner's body stops at its next await (also inside a nested group's wait())
/// with cancelled_error. with_task_group() catches that one and goes on to
/// wait(), which takes the group's cancellation request back and rethrows the
/// child's error; code that calls wait() itself must let the body's
/// cancelled_error reach it (prefer with_task_group).
///
/// Thread safety: loop-local.
/// Cancellation: cancelling the task blocked in wait() cancels every child,
/// waits for them all, then throws cancelled_error.
/// Example:
/// ```
/// co_await with_task_group([](task_group& tg) -> task<> {
///     tg.create_task(fetch(1));
///     tg.create_task(fetch(2));
///     co_return;
/// });
/// ```
class task_group {
public:
    task_group() noexcept : owner_(static_cast<detail::task_record*>(detail::tls.ctx)) {
        if (owner_) owner_->retain();
    }
    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;
    ~task_group() {
        for (auto& c : children_) {
            if (!c->st->done) c->st->request_cancel();
            detail::intrusive_list<detail::done_listener>::erase(c.get());
            c->st->release();
        }
        if (owner_) owner_->release();
    }

    /// Schedules `t` in the group. Throws std::logic_error once the group has
    /// failed or finished waiting.
    template <class T>
    task_handle<T> create_task(task<T> t, std::string name = {}) {
        if (closed_)
            throw std::logic_error("offload: task_group::create_task after the group finished waiting or a "
                                   "child failed; make a new task_group");
        task_handle<T> h = offload::create_task(std::move(t), std::move(name));
        auto c = std::make_unique<child>();
        c->group = this;
        c->st = detail::task_handle_access::state(h);
        c->st->retain();
        c->st->add_listener(c.get());
        children_.push_back(std::move(c));
        return h;
    }

    /// Waits for every child (also those created while waiting); rethrows the first failure.
    task<> wait(std::source_location loc = std::source_location::current()) {
        in_wait_ = true;
        take_back_owner_cancel();
        bool cancelled_here = false;
        // Children may add children: wait until a pass finds nothing running.
        while (!failed_ && !cancelled_here && running() > 0) {
            auto states = snapshot();
            detail::children_awaiter w(states, detail::children_awaiter::mode::first_failure, false, loc);
            try {
                co_await w;
            } catch (const cancelled_error&) {
                cancelled_here = true;
            }
        }
        if (failed_ || cancelled_here) co_await stop_all(loc);
        closed_ = true;
        in_wait_ = false;
        if (cancelled_here) detail::throw_cancelled(detail::tls.ctx);
        if (failed_) failed_->rethrow_if_failed();
    }

    /// Number of children not finished yet.
    std::size_t running() const noexcept {
        std::size_t n = 0;
        for (auto& c : children_) n += !c->st->done;
        return n;
    }

private:
    template <class R, class F>
    friend task<R> detail::run_with_task_group(F body, std::source_location loc);

    struct child final : detail::done_listener {
        task_group* group = nullptr;
        detail::task_state_base* st = nullptr;
        void on_done() noexcept override { group->child_done(st); }
    };

    void child_done(detail::task_state_base* st) noexcept {
        if (!failed_ && st->failed()) {
            failed_ = st; // the group rethrows it; siblings are cancelled now
            closed_ = true;
            cancel_running();
            // Stop the owner's body too, unless it already waits for us.
            if (owner_ && !owner_->done && !in_wait_) {
                owner_->request_cancel();
                owner_cancelled_ = true;
            }
        }
    }
    void take_back_owner_cancel() noexcept {
        if (owner_cancelled_) {
            owner_cancelled_ = false;
            owner_->uncancel();
        }
    }
    /// Cancels every running child and waits (shielded) until all have ended.
    task<> stop_all(std::source_location loc) {
        closed_ = true;
        cancel_running();
        while (running() > 0) {
            auto states = snapshot();
            detail::children_awaiter w(states, detail::children_awaiter::mode::all_done, true, loc);
            co_await w;
        }
    }
    void cancel_running() noexcept {
        for (auto& c : children_)
            if (!c->st->done) c->st->request_cancel();
    }
    std::vector<detail::task_state_base*> snapshot() const {
        std::vector<detail::task_state_base*> s;
        s.reserve(children_.size());
        for (auto& c : children_)
            if (!c->st->done) s.push_back(c->st);
        return s;
    }

    std::vector<std::unique_ptr<child>> children_;
    detail::task_record* owner_;
    detail::task_state_base* failed_ = nullptr;
    bool closed_ = false;
    bool in_wait_ = false;
    bool owner_cancelled_ = false; // we asked the owner to stop, and have not taken it back
};

/// Runs `body(tg)` (a callable returning task<R>) with a new task_group owned
/// by the calling task, then waits for the group: `async with TaskGroup() as
/// tg:` of asyncio. When a child fails, the body is stopped at its next await,
/// the other children are cancelled, and the child's error is rethrown once
/// all have ended. When the body itself throws (or the task is cancelled), the
/// children are cancelled and waited for, and the body's exception is
/// rethrown. Otherwise gives the body's result once every child has finished.
///
/// Cancellation: as task_group::wait. Thread safety: loop-local.
/// Example: `co_await with_task_group([&](task_group& tg) -> task<> { tg.create_task(a()); co_await b(); });`
template <class F>
    requires std::is_invocable_v<F&, task_group&> && detail::is_task_v<std::invoke_result_t<F&, task_group&>>
auto with_task_group(F body, std::source_location loc = std::source_location::current()) {
    using R = typename std::invoke_result_t<F&, task_group&>::value_type;
    return detail::run_with_task_group<R>(std::move(body), loc);
}

namespace detail {
template <class R, class F>
task<R> run_with_task_group(F body, std::source_location loc) {
    task_group tg;
    std::optional<value_or_monostate_t<R>> result;
    std::exception_ptr body_error;
    try {
        if constexpr (std::is_void_v<R>)
            co_await body(tg);
        else
            result.emplace(co_await body(tg));
    } catch (const cancelled_error&) {
        // The group stopping its owner is not the body's error: wait() reports the child's.
        if (!tg.owner_cancelled_) body_error = std::current_exception();
    } catch (...) {
        body_error = std::current_exception();
    }
    if (body_error) {
        co_await tg.stop_all(loc); // a child's error then goes to the exception handler
        tg.take_back_owner_cancel();
        std::rethrow_exception(body_error);
    }
    co_await tg.wait(loc);
    if constexpr (!std::is_void_v<R>) co_return std::move(*result);
}
} // namespace detail

} // namespace offload
