// offload/as_completed.hpp — as_completed(handles, timeout), asyncio.as_completed:
// iterate over already-scheduled tasks and co_await each item to get the next
// result to finish, in completion order. One shared state listens to every
// task from the call on (a done_listener each), so the order is exact even
// while the caller is busy between awaits; the listeners go when the last
// range, item or awaiter goes, and the tasks keep running.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/base/timer_heap.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/tasks/list_waiter.hpp>
#include <offload/detail/tasks/task_state.hpp>
#include <offload/errors.hpp>
#include <offload/task_handle.hpp>

#include <fmt/core.h>

#include <chrono>
#include <cstddef>
#include <deque>
#include <iterator>
#include <memory>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <unordered_set>
#include <utility>
#include <vector>

namespace offload {

namespace detail {

template <class T>
struct completion_awaiter;

// The shared state of one as_completed call: the tasks, a listener on each,
// the finished ones not yet handed out (in completion order), the awaiters
// waiting for the next one, and the timeout's timer.
template <class T>
class completion_stream {
public:
    static constexpr std::size_t none = static_cast<std::size_t>(-1);

    completion_stream(std::vector<task_handle<T>> handles, std::optional<clock::duration> timeout,
                      std::source_location loc)
        : loop_(&loop_core::require_current("as_completed")), where_(loc), timeout_(timeout) {
        // As asyncio, the input is a set: a task given twice yields once.
        std::unordered_set<task_state_base*> seen;
        handles_.reserve(handles.size());
        for (auto& h : handles)
            if (seen.insert(task_handle_access::state(h)).second) handles_.push_back(std::move(h));
        nodes_ = std::make_unique<node[]>(handles_.size());
        for (std::size_t i = 0; i < handles_.size(); ++i) {
            nodes_[i].owner = this;
            nodes_[i].index = i;
            task_state_base* st = task_handle_access::state(handles_[i]);
            if (st->done)
                ready_.push_back(i);
            else
                st->add_listener(&nodes_[i]);
        }
        if (timeout && ready_.size() < handles_.size()) {
            timer_.owner = this;
            timer_.deadline = clock::now() + *timeout;
            loop_->add_timer(&timer_);
        }
    }
    completion_stream(const completion_stream&) = delete;
    completion_stream& operator=(const completion_stream&) = delete;
    ~completion_stream() {
        // nodes_ (declared after handles_) leave the tasks' listener lists first.
        if (timer_.queued()) loop_->remove_timer(&timer_);
    }

    std::size_t size() const noexcept { return handles_.size(); }
    std::source_location where() const noexcept { return where_; }

private:
    friend struct completion_awaiter<T>;

    struct node final : done_listener {
        completion_stream* owner = nullptr;
        std::size_t index = 0;
        void on_done() noexcept override { owner->finished(index); }
    };
    struct expiry final : timer_node {
        completion_stream* owner = nullptr;
        void fire() override { owner->expire(); }
    };

    // For await_ready: hands out a finished task (or the timeout) at once, if any.
    bool try_take(completion_awaiter<T>& w) {
        if (handed_ + waiting_ >= handles_.size())
            throw std::logic_error(fmt::format("offload: as_completed was awaited more often than it has tasks "
                                               "({}); await each item of the range once",
                                               handles_.size()));
        if (!ready_.empty()) {
            w.index = ready_.front();
            ready_.pop_front();
        } else if (!timed_out_) {
            return false;
        }
        ++handed_;
        return true;
    }
    void finished(std::size_t i) noexcept {
        if (completion_awaiter<T>* w = waiters_.pop_front()) {
            --waiting_;
            ++handed_;
            w->index = i;
            w->serve();
        } else {
            ready_.push_back(i);
        }
    }
    // A served awaiter was cancelled before its task ran: its result goes to
    // the next awaiter, or back to the front of the line (a timeout: the next
    // await times out instead).
    void give_back(std::size_t i) noexcept {
        --handed_;
        if (i == none) return;
        if (completion_awaiter<T>* w = waiters_.pop_front()) {
            --waiting_;
            ++handed_;
            w->index = i;
            w->serve();
        } else {
            ready_.push_front(i);
        }
    }
    void expire() {
        timed_out_ = true;
        for (std::size_t i = 0; i < handles_.size(); ++i) intrusive_list<done_listener>::erase(&nodes_[i]);
        while (completion_awaiter<T>* w = waiters_.pop_front()) {
            --waiting_;
            ++handed_;
            w->serve(); // index stays `none`: the await throws timeout_error
        }
    }

    loop_core* loop_;
    std::source_location where_;
    std::optional<clock::duration> timeout_;
    std::vector<task_handle<T>> handles_;
    std::unique_ptr<node[]> nodes_;
    std::deque<std::size_t> ready_;
    intrusive_list<completion_awaiter<T>> waiters_;
    std::size_t waiting_ = 0; // awaiters in waiters_
    std::size_t handed_ = 0;  // results (or timeouts) handed out
    bool timed_out_ = false;
    expiry timer_;
};

// One co_await of an as_completed item: takes the next finished task's result.
template <class T>
struct completion_awaiter final : list_waiter<completion_awaiter<T>> {
    std::shared_ptr<completion_stream<T>> s;
    std::size_t index = completion_stream<T>::none;

    explicit completion_awaiter(std::shared_ptr<completion_stream<T>> st)
        : list_waiter<completion_awaiter<T>>(st->where()), s(std::move(st)) {}
    completion_awaiter(completion_awaiter&&) noexcept = default;
    ~completion_awaiter() {
        if (this->linked()) --s->waiting_; // a frame destroyed while waiting (loop teardown)
    }

    bool await_ready() { return s->try_take(*this); }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!this->suspend_in(s->waiters_, h)) return false;
        ++s->waiting_;
        return true;
    }
    T await_resume() {
        this->finish_wait();
        if (index == completion_stream<T>::none)
            throw timeout_error(fmt::format(
                "offload::timeout_error: the timeout of {:.3f} ms given to as_completed passed before another "
                "task finished; the tasks keep running (cancel or await them through their handles), or raise "
                "the timeout",
                std::chrono::duration<double, std::milli>(s->timeout_.value_or(clock::duration::zero())).count()));
        return s->handles_[index].result();
    }
    // Served and cancelled before the task ran: the result goes back (list_waiter.hpp).
    void give_back() noexcept {
        s->give_back(index);
        index = completion_stream<T>::none;
    }
    void cancel() noexcept override {
        if (this->linked()) --s->waiting_;
        list_waiter<completion_awaiter<T>>::cancel();
    }
};

} // namespace detail

/// One item of an as_completed range: `co_await` it to get the next result to
/// finish (or rethrow that task's exception). Any item gives the next result,
/// whichever of them you await.
template <class T>
class next_completion {
public:
    /// Waits for the next task to finish: its result, or its exception rethrown
    /// (with a timeout, timeout_error once the deadline passed).
    [[nodiscard]] detail::completion_awaiter<T> operator co_await() const { return detail::completion_awaiter<T>(s_); }

private:
    template <class>
    friend class as_completed_range;
    explicit next_completion(std::shared_ptr<detail::completion_stream<T>> s) noexcept : s_(std::move(s)) {}
    std::shared_ptr<detail::completion_stream<T>> s_;
};

/// What as_completed returns: a range of size() items (one per distinct task),
/// each an awaitable next_completion<T>. Copies share one state.
template <class T>
class as_completed_range {
public:
    /// An input iterator over the items; every item awaits the next completion.
    class iterator {
    public:
        /// An item: an awaitable next_completion.
        using value_type = next_completion<T>;
        /// Required by std::input_iterator.
        using difference_type = std::ptrdiff_t;
        /// A single-pass range.
        using iterator_category = std::input_iterator_tag;

        iterator() = default;
        /// The item here (an awaitable of the next completion).
        next_completion<T> operator*() const { return next_completion<T>(s_); }
        /// Moves to the next item.
        iterator& operator++() noexcept {
            ++i_;
            return *this;
        }
        /// Moves to the next item; returns the iterator as it was.
        iterator operator++(int) noexcept {
            iterator old = *this;
            ++i_;
            return old;
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.i_ == b.i_; }

    private:
        friend class as_completed_range;
        iterator(std::shared_ptr<detail::completion_stream<T>> s, std::size_t i) : s_(std::move(s)), i_(i) {}
        std::shared_ptr<detail::completion_stream<T>> s_;
        std::size_t i_ = 0;
    };

    /// The first item.
    iterator begin() const { return iterator(s_, 0); }
    /// Past the last item (size() items in all).
    iterator end() const { return iterator(s_, s_->size()); }
    /// The number of distinct tasks, which is the number of results to await.
    std::size_t size() const noexcept { return s_->size(); }

private:
    template <class U>
    friend as_completed_range<U> as_completed(std::vector<task_handle<U>>, std::source_location);
    template <class U, class Rep, class Period>
    friend as_completed_range<U> as_completed(std::vector<task_handle<U>>, std::chrono::duration<Rep, Period>,
                                              std::source_location);
    explicit as_completed_range(std::shared_ptr<detail::completion_stream<T>> s) noexcept : s_(std::move(s)) {}
    std::shared_ptr<detail::completion_stream<T>> s_;
};

/// Iterates over the tasks behind `handles` in the order they finish
/// (asyncio.as_completed): each item, when awaited, gives the next result to
/// finish, or rethrows that task's exception (a cancelled task rethrows
/// cancelled_error). Listening starts at this call, so tasks that end before
/// the first await keep their order. A handle given twice counts once; an
/// empty vector gives an empty range. Throws std::logic_error for an empty
/// handle, when no loop runs on this thread, and when awaited more often than
/// it has tasks. Nothing is cancelled: breaking out of the loop leaves the
/// remaining tasks running (their handles still work).
///
/// Thread safety: call it, and await the items, on the loop's thread.
/// Cancellation: a cancelled await throws cancelled_error and does not use up a
/// result; the tasks keep running; once the range and its items are gone, so
/// are its listeners on the tasks.
/// Example:
/// ```
/// for (auto next : as_completed(handles)) {
///     int v = co_await next; // the first to finish, then the second, ...
/// }
/// ```
template <class T>
as_completed_range<T> as_completed(std::vector<task_handle<T>> handles,
                                   std::source_location loc = std::source_location::current()) {
    return as_completed_range<T>(std::make_shared<detail::completion_stream<T>>(std::move(handles), std::nullopt, loc));
}

/// As as_completed(handles), with a deadline `timeout` from this call: the
/// results that arrive in time are given as usual; once it has passed, every
/// remaining await throws timeout_error (asyncio's as_completed(timeout=)),
/// and the unfinished tasks keep running. Results already finished are still
/// given before the timeouts.
/// Example: `for (auto next : as_completed(handles, 5s)) try { use(co_await next); } catch (const timeout_error&) {}`
template <class T, class Rep, class Period>
as_completed_range<T> as_completed(std::vector<task_handle<T>> handles, std::chrono::duration<Rep, Period> timeout,
                                   std::source_location loc = std::source_location::current()) {
    return as_completed_range<T>(std::make_shared<detail::completion_stream<T>>(
        std::move(handles), std::chrono::ceil<detail::clock::duration>(timeout), loc));
}

} // namespace offload
