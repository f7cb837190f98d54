// offload/detail/tasks/children_awaiter.hpp — waits for a set of scheduled tasks: until
// all have ended, or until the first one fails. gather, wait_for and
// task_group build their "cancel the rest and wait for them to unwind"
// behaviour on it. In shielded mode a cancellation of the waiting task does
// not interrupt the wait; it is recorded and handed back afterwards, so no
// child is ever left running unobserved (no orphans).
#pragma once

#include <offload/detail/tasks/task_state.hpp>

#include <cstddef>
#include <memory>
#include <span>

namespace offload::detail {

class children_awaiter final : public waiter {
public:
    enum class mode { all_done, first_failure };

    children_awaiter(std::span<task_state_base* const> children, mode m, bool shielded, std::source_location loc)
        : waiter(loc), nodes_(std::make_unique<node[]>(children.size())), count_(children.size()), mode_(m),
          shielded_(shielded) {
        for (std::size_t i = 0; i < count_; ++i) {
            nodes_[i].owner = this;
            nodes_[i].st = children[i];
            if (children[i]->done)
                note(children[i]);
            else
                ++remaining_;
        }
    }
    children_awaiter(const children_awaiter&) = delete;
    children_awaiter& operator=(const children_awaiter&) = delete;

    bool await_ready() const noexcept { return satisfied(); }
    bool await_suspend(std::coroutine_handle<> h) {
        if (shielded_)
            arm_shielded(h);
        else if (!arm(h))
            return false;
        for (std::size_t i = 0; i < count_; ++i)
            if (!nodes_[i].st->done) nodes_[i].st->add_listener(&nodes_[i]);
        suspended_ = true;
        return true;
    }
    /// Shielded: returns normally and hands a recorded cancellation back to the task.
    void await_resume() {
        suspended_ = false;
        if (shielded_)
            rearm_cancel();
        else
            throw_if_cancelled();
    }

    /// The child that failed (threw, or was cancelled) first, or nullptr.
    task_state_base* first_failure() const noexcept { return first_failure_; }

    void cancel() noexcept override {
        if (shielded_) {
            cancelled = true;
            return;
        }
        for (std::size_t i = 0; i < count_; ++i) intrusive_list<done_listener>::erase(&nodes_[i]);
        suspended_ = false;
        wake_cancelled();
    }

private:
    struct node final : done_listener {
        children_awaiter* owner = nullptr;
        task_state_base* st = nullptr;
        void on_done() noexcept override { owner->child_done(st); }
    };

    bool satisfied() const noexcept {
        return remaining_ == 0 || (mode_ == mode::first_failure && first_failure_ != nullptr);
    }
    void note(task_state_base* st) noexcept {
        if (!first_failure_ && (st->failed() || st->cancelled())) first_failure_ = st;
    }
    void child_done(task_state_base* st) noexcept {
        --remaining_;
        note(st);
        if (suspended_ && satisfied()) {
            suspended_ = false;
            for (std::size_t i = 0; i < count_; ++i) intrusive_list<done_listener>::erase(&nodes_[i]);
            wake();
        }
    }

    std::unique_ptr<node[]> nodes_;
    std::size_t count_;
    std::size_t remaining_ = 0;
    task_state_base* first_failure_ = nullptr;
    mode mode_;
    bool shielded_;
    bool suspended_ = false;
};

} // namespace offload::detail
