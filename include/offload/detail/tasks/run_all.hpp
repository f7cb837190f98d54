// offload/detail/tasks/run_all.hpp — the engine of gather and map: run a set
// of tasks as scheduled tasks and wait until all have ended. By default the
// first failure (or a cancellation of the waiting task) cancels the others
// and waits for them to unwind before rethrowing: no child ever outlives the
// wait (structured, like a TaskGroup). With on_child_failure::keep_going
// (gather(return_exceptions, ...)) a failing child cancels nobody; only a
// cancellation of the waiting task does.
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

/// What gather_children does when a child fails.
enum class on_child_failure {
    cancel_rest, // cancel the others, wait for them, rethrow the failure
    keep_going,  // let every child run to its end; the caller reads the outcomes
};

// Waits for `children`. On cancellation of the caller, cancels them all,
// waits for all to end, then throws cancelled_error. With cancel_rest, the
// first failure does the same and is then rethrown.
inline task<> gather_children(std::vector<task_state_base*> children, std::source_location loc,
                              on_child_failure policy = on_child_failure::cancel_rest) {
    bool cancelled_here = false;
    task_state_base* failed = nullptr;
    {
        const auto m = policy == on_child_failure::cancel_rest ? children_awaiter::mode::first_failure
                                                               : children_awaiter::mode::all_done;
        children_awaiter w(children, m, false, loc);
        try {
            co_await w;
            if (policy == on_child_failure::cancel_rest) failed = w.first_failure();
        } catch (const cancelled_error&) {
            cancelled_here = true;
        }
    }
    if (!cancelled_here && !failed) co_return;
    for (task_state_base* c : children)
        if (!c->done) c->request_cancel();
    co_await children_awaiter(children, children_awaiter::mode::all_done, true, loc);
    if (cancelled_here) throw_cancelled(tls.ctx); // with the message of cancel(message)
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

/// Schedules every task on the current loop (`what` names the caller in the
/// error thrown when no loop runs); the references keep their states alive.
template <class T>
std::vector<state_ref<T>> spawn_all(std::vector<task<T>> tasks, const char* what) {
    loop_core& loop = loop_core::require_current(what);
    std::vector<state_ref<T>> refs;
    refs.reserve(tasks.size());
    for (auto& t : tasks) refs.emplace_back(spawn(loop, std::move(t), {}));
    return refs;
}

template <class T>
std::vector<task_state_base*> states_of(const std::vector<state_ref<T>>& refs) {
    std::vector<task_state_base*> states;
    states.reserve(refs.size());
    for (auto& r : refs) states.push_back(r.get());
    return states;
}

/// Runs every task concurrently on the current loop and returns their results
/// in order (`void` as std::monostate); gather_children's failure rules.
template <class T>
task<std::vector<value_or_monostate_t<T>>> run_all(std::vector<task<T>> tasks, std::source_location loc) {
    std::vector<state_ref<T>> refs = spawn_all(std::move(tasks), "gather");
    co_await gather_children(states_of(refs), loc);
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
