// offload/queue.hpp — queue<T> (asyncio.Queue): a FIFO between tasks of one
// event loop, optionally bounded. A full queue suspends put() (backpressure);
// an item put while a task waits in get() is handed to it directly; task_done()
// and join() track when every item put has been processed. Waiting allocates
// nothing: each awaiter is its wait-list node (a put() awaiter carries its item).
#pragma once

#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/base/ring_queue.hpp>
#include <offload/detail/tasks/list_waiter.hpp>

#include <coroutine>
#include <cstddef>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace offload {

/// A FIFO queue for tasks of one event loop (asyncio.Queue). T may be move-only.
///
/// State: `items_` (at most maxsize when bounded), `getters_` (tasks waiting in
/// get(), each with an empty slot), `putters_` (tasks waiting in put(), each
/// carrying its item). Invariants: getters wait only while items_ is empty;
/// putters wait only while items_ is full. Every hand-off keeps them: put()
/// gives its item to the oldest getter; get() from a full queue moves the
/// oldest putter's item in. So order is FIFO and nobody barges in.
///
/// Thread safety: loop-local; not thread-safe (from another thread, go through
/// event_loop::call_soon_threadsafe). It may be constructed outside a loop. In
/// debug mode, a call from another thread while tasks wait on it throws
/// std::logic_error.
/// Cancellation: a cancelled put() did not put its item (it is destroyed with
/// the awaiter); a cancelled get() took no item. A put() or get() that was
/// already served completes normally, and the cancellation is thrown at the
/// task's next suspension point: no item is ever lost or duplicated.
/// Example: `co_await q.put(job);` in producers, `auto job = co_await q.get(); …; q.task_done();` in workers.
template <class T>
class queue {
    static_assert(std::is_move_constructible_v<T>, "offload::queue<T> needs a move-constructible T");

public:
    /// Awaiter of get(): the wait-list node with the slot an item is handed into.
    /// Cancellation: a cancelled get() took no item; one already served keeps it.
    struct get_awaiter final : detail::list_waiter<get_awaiter> {
        queue* q;
        std::optional<T> slot;

        get_awaiter(queue* qu, std::source_location loc) noexcept : detail::list_waiter<get_awaiter>(loc), q(qu) {}
        get_awaiter(get_awaiter&& o) noexcept : detail::list_waiter<get_awaiter>(std::move(o)), q(o.q) {}

        bool await_ready() {
            if (q->items_.empty()) return false;
            slot.emplace(q->take());
            return true;
        }
        bool await_suspend(std::coroutine_handle<> h) { return this->suspend_in(q->getters_, h); }
        T await_resume() {
            this->throw_if_cancelled();
            return std::move(*slot);
        }
    };

    /// Awaiter of put(): the wait-list node, carrying the item until there is
    /// room. Cancellation: a cancelled put() did not put its item.
    struct put_awaiter final : detail::list_waiter<put_awaiter> {
        queue* q;
        T item;

        put_awaiter(queue* qu, T&& v, std::source_location loc)
            : detail::list_waiter<put_awaiter>(loc), q(qu), item(std::move(v)) {}
        put_awaiter(put_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<T>)
            : detail::list_waiter<put_awaiter>(std::move(o)), q(o.q), item(std::move(o.item)) {}

        bool await_ready() { return q->offer(item); }
        bool await_suspend(std::coroutine_handle<> h) { return this->suspend_in(q->putters_, h); }
    };

    /// Awaiter of join(): waits until every item put has been marked task_done().
    struct join_awaiter final : detail::list_waiter<join_awaiter> {
        queue* q;

        join_awaiter(queue* qu, std::source_location loc) noexcept : detail::list_waiter<join_awaiter>(loc), q(qu) {}
        join_awaiter(join_awaiter&& o) noexcept : detail::list_waiter<join_awaiter>(std::move(o)), q(o.q) {}

        bool await_ready() const noexcept { return q->unfinished_ == 0; }
        bool await_suspend(std::coroutine_handle<> h) { return this->suspend_in(q->joiners_, h); }
    };

    /// A queue holding at most `maxsize` items; 0 means unbounded (as in asyncio).
    explicit queue(std::size_t maxsize = 0) noexcept : maxsize_(maxsize) {}
    queue(const queue&) = delete;
    queue& operator=(const queue&) = delete;
    /// Destroying a queue that tasks still wait on is a bug; the waiters are
    /// detached so that their frames can still be destroyed safely.
    ~queue() {
        getters_.clear();
        putters_.clear();
        joiners_.clear();
    }

    /// Awaits room and puts `item`: returns at once unless the queue is full.
    /// Cancellation: a cancelled put did not put its item.
    [[nodiscard]] put_awaiter put(T item, std::source_location loc = std::source_location::current()) {
        return put_awaiter(this, std::move(item), loc);
    }

    /// Awaits an item and removes it from the queue: returns at once unless it is empty.
    /// Cancellation: a cancelled get took no item.
    [[nodiscard]] get_awaiter get(std::source_location loc = std::source_location::current()) noexcept {
        return get_awaiter(this, loc);
    }

    /// Puts `item` if there is room now and returns true; returns false (and
    /// leaves `item` untouched) if the queue is full.
    [[nodiscard]] bool try_put(T&& item) {
        check_thread("queue::try_put");
        return offer(item);
    }
    /// Copies `item` in if there is room now.
    [[nodiscard]] bool try_put(const T& item)
        requires std::is_copy_constructible_v<T>
    {
        check_thread("queue::try_put");
        if (full()) return false;
        T copy(item);
        return offer(copy);
    }

    /// Removes and returns the first item, or std::nullopt if the queue is empty.
    std::optional<T> try_get() {
        check_thread("queue::try_get");
        if (items_.empty()) return std::nullopt;
        return std::optional<T>(take());
    }

    /// Marks one item taken by get() as processed; when every item put so far
    /// is processed, join() returns. Throws std::logic_error if called more
    /// times than items were put.
    void task_done() {
        check_thread("queue::task_done");
        if (unfinished_ == 0)
            throw std::logic_error("offload: queue::task_done() called more times than items were put; call it "
                                   "once per item taken with get()");
        if (--unfinished_ == 0)
            while (join_awaiter* w = joiners_.pop_front()) w->wake();
    }

    /// Awaits the moment every item put has been marked task_done() (at once if so now).
    [[nodiscard]] join_awaiter join(std::source_location loc = std::source_location::current()) noexcept {
        return join_awaiter(this, loc);
    }

    /// Number of items in the queue (not counting items of waiting put() calls).
    std::size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    /// True if put() would wait (never for an unbounded queue).
    bool full() const noexcept { return maxsize_ != 0 && items_.size() >= maxsize_; }
    std::size_t maxsize() const noexcept { return maxsize_; }

private:
    // Puts `item` if it can go now: to the oldest getter (the queue is then
    // empty), else into items_ if not full. Moves from `item` only on success.
    bool offer(T& item) {
        if (get_awaiter* g = getters_.pop_front()) {
            g->slot.emplace(std::move(item));
            ++unfinished_;
            g->wake();
            return true;
        }
        if (full()) return false;
        items_.emplace_back(std::move(item));
        ++unfinished_;
        return true;
    }

    // Removes the first item; refills from the oldest putter (the queue was full).
    T take() {
        T v = std::move(items_.front());
        items_.pop_front();
        if (put_awaiter* p = putters_.pop_front()) {
            items_.emplace_back(std::move(p->item));
            ++unfinished_;
            p->wake();
        }
        return v;
    }

    void check_thread(const char* what) const {
        detail::check_waiters_thread(getters_, what);
        detail::check_waiters_thread(putters_, what);
        detail::check_waiters_thread(joiners_, what);
    }

    std::size_t maxsize_;
    std::size_t unfinished_ = 0; // items put and not yet marked task_done()
    detail::ring_queue<T> items_;
    detail::intrusive_list<get_awaiter> getters_;
    detail::intrusive_list<put_awaiter> putters_;
    detail::intrusive_list<join_awaiter> joiners_;
};

} // namespace offload
