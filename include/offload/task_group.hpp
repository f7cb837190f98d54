// offload/task_group.hpp — task_group, structured concurrency as in
// asyncio.TaskGroup: tasks created in the group are awaited together by
// wait(); the first child to fail cancels its siblings, and its exception is
// rethrown from wait() once every child has ended.
#pragma once

#include <offload/detail/tasks/children_awaiter.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <memory>
#include <source_location>
#include <string>
#include <vector>

namespace offload {

/// A scope for tasks. Always `co_await tg.wait()` before the group goes away;
/// a group destroyed with children still running cancels them (it cannot wait).
///
/// Thread safety: loop-local.
/// Cancellation: cancelling the task blocked in wait() cancels every child,
/// waits for them all, then throws cancelled_error.
/// Example:
/// ```
/// task_group tg;
/// tg.create_task(fetch(1));
/// tg.create_task(fetch(2));
/// co_await tg.wait();
/// ```
class task_group {
public:
    task_group() = default;
    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;
    ~task_group() {
        for (auto& c : children_) {
            if (!c->st->done) c->st->request_cancel();
            detail::intrusive_list<detail::done_listener>::erase(c.get());
            c->st->release();
        }
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
        if (failed_ || cancelled_here) {
            closed_ = true;
            cancel_running();
            while (running() > 0) {
                auto states = snapshot();
                detail::children_awaiter w(states, detail::children_awaiter::mode::all_done, true, loc);
                co_await w;
            }
        }
        closed_ = true;
        if (cancelled_here) throw cancelled_error();
        if (failed_) failed_->rethrow_if_failed();
    }

    /// Number of children not finished yet.
    std::size_t running() const noexcept {
        std::size_t n = 0;
        for (auto& c : children_) n += !c->st->done;
        return n;
    }

private:
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
    detail::task_state_base* failed_ = nullptr;
    bool closed_ = false;
};

} // namespace offload
