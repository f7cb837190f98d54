// offload/detail/tasks/run_all.hpp — the engine of gather and map: run a set
// of tasks as scheduled tasks, wait until all have ended or one failed, and
// on the first failure (or when the waiting task is cancelled) cancel the
// others and wait for them to unwind before rethrowing: no child ever
// outlives the wait (structured, like a TaskGroup).
#pragma once

#include <offload/detail/base/type_traits.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/tasks/children_awaiter.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/errors.hpp>
#include <offload/task.hpp>

#include <source_location>
#include <type_traits>
#include <utility>
#include <vector>

namespace offload::detail {

// Waits for `children`; on the first failure, or on cancellation of the
// caller, cancels the others, waits for all to end, then rethrows.
inline task<> gather_children(std::vector<task_state_base*> children, std::source_location loc) {
    bool cancelled_here = false;
    task_state_base* failed = nullptr;
    {
        children_awaiter w(children, children_awaiter::mode::first_failure, false, loc);
        try {
            co_await w;
            failed = w.first_failure();
        } catch (const cancelled_error&) {
            cancelled_here = true;
        }
    }
    if (!cancelled_here && !failed) co_return;
    for (task_state_base* c : children)
        if (!c->done) c->request_cancel();
    co_await children_awaiter(children, children_awaiter::mode::all_done, true, loc);
    if (cancelled_here) throw cancelled_error();
    failed->rethrow_if_failed();
}

/// One reference to a task's state, dropped with the owner.
template <class T>
class state_ref {
public:
    explicit state_ref(task_state<T>* st) noexcept : st_(st) { st_->retain(); }
    state_ref(state_ref&& o) noexcept : st_(std::exchange(o.st_, nullptr)) {}
    state_ref& operator=(state_ref&&) = delete;
    ~state_ref() {
        if (st_) st_->release();
    }
    task_state<T>* get() const noexcept { return st_; }

private:
    task_state<T>* st_;
};

/// Runs every task concurrently on the current loop and returns their results
/// in order (`void` as std::monostate); gather_children's failure rules.
template <class T>
task<std::vector<value_or_monostate_t<T>>> run_all(std::vector<task<T>> tasks, std::source_location loc) {
    loop_core& loop = loop_core::require_current("gather");
    std::vector<state_ref<T>> refs;
    refs.reserve(tasks.size());
    std::vector<task_state_base*> states;
    states.reserve(tasks.size());
    for (auto& t : tasks) {
        refs.emplace_back(spawn(loop, std::move(t), {}));
        states.push_back(refs.back().get());
    }
    co_await gather_children(std::move(states), loc);
    std::vector<value_or_monostate_t<T>> out;
    out.reserve(refs.size());
    for (auto& r : refs) {
        if constexpr (std::is_void_v<T>) {
            r.get()->result();
            out.emplace_back();
        } else {
            out.push_back(r.get()->result());
        }
    }
    co_return out;
}

} // namespace offload::detail
