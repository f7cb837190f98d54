// offload/detail/tasks/children_awaiter.hpp — waits for a set of scheduled tasks: until
// all have ended, the first one ended, the first one failed, or an optional
// timeout passed. gather, wait, wait_for and task_group build their
// behaviour on it. In shielded mode a cancellation of the waiting task does
// not interrupt the wait; it is recorded and handed back afterwards, so no
// child is ever left running unobserved (no orphans).
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/timer_heap.hpp>
#include <offload/detail/tasks/task_state.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>

namespace offload::detail {

class children_awaiter final : public waiter, timer_node {
public:
    /// When the wait ends (besides all children having ended, which ends every mode):
    /// first_failure: a child threw or was cancelled (gather, task_group);
    /// first_exception: a child threw something other than cancelled_error (asyncio.wait's FIRST_EXCEPTION);
    /// first_done: any child ended (asyncio.wait's FIRST_COMPLETED).
    enum class mode { all_done, first_failure, first_exception, first_done };

    /// `timeout`, for a non-shielded wait only: once it has passed the wait
    /// ends normally and timed_out() is true (a non-positive one still lets
    /// the loop run once, as asyncio.wait's does).
    children_awaiter(std::span<task_state_base* const> children, mode m, bool shielded, std::source_location loc,
                     std::optional<clock::duration> timeout = std::nullopt)
        : waiter(loc), nodes_(std::make_unique<node[]>(children.size())), count_(children.size()), mode_(m),
          shielded_(shielded), timeout_(timeout) {
        if (shielded && timeout) throw std::logic_error("offload: a shielded children_awaiter cannot have a timeout");
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
    ~children_awaiter() {
        if (queued()) loop->remove_timer(this);
    }

    bool await_ready() const noexcept { return satisfied(); }
    bool await_suspend(std::coroutine_handle<> h) {
        if (shielded_)
            arm_shielded(h);
        else if (!arm(h))
            return false;
        for (std::size_t i = 0; i < count_; ++i)
            if (!nodes_[i].st->done) nodes_[i].st->add_listener(&nodes_[i]);
        if (timeout_) {
            deadline = clock::now() + *timeout_;
            loop->add_timer(this);
        }
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
    /// True if the wait ended because its timeout passed.
    bool timed_out() const noexcept { return timed_out_; }

    void cancel() noexcept override {
        if (shielded_) {
            cancelled = true;
            return;
        }
        stop_listening();
        wake_cancelled();
    }

private:
    struct node final : done_listener {
        children_awaiter* owner = nullptr;
        task_state_base* st = nullptr;
        void on_done() noexcept override { owner->child_done(st); }
    };

    bool satisfied() const noexcept {
        if (remaining_ == 0) return true;
        switch (mode_) {
        case mode::all_done: return false;
        case mode::first_failure: return first_failure_ != nullptr;
        case mode::first_exception: return first_exception_;
        case mode::first_done: return remaining_ < count_;
        }
        return false;
    }
    void note(task_state_base* st) noexcept {
        if (!first_failure_ && (st->failed() || st->cancelled())) first_failure_ = st;
        if (st->failed()) first_exception_ = true;
    }
    void child_done(task_state_base* st) noexcept {
        --remaining_;
        note(st);
        if (suspended_ && satisfied()) {
            stop_listening();
            wake();
        }
    }
    void fire() override {
        timed_out_ = true;
        stop_listening();
        wake();
    }
    void stop_listening() noexcept {
        suspended_ = false;
        for (std::size_t i = 0; i < count_; ++i) intrusive_list<done_listener>::erase(&nodes_[i]);
        if (queued()) loop->remove_timer(this);
    }

    std::unique_ptr<node[]> nodes_;
    std::size_t count_;
    std::size_t remaining_ = 0;
    task_state_base* first_failure_ = nullptr;
    bool first_exception_ = false;
    mode mode_;
    bool shielded_;
    bool suspended_ = false;
    bool timed_out_ = false;
    std::optional<clock::duration> timeout_;
};

} // namespace offload::detail
