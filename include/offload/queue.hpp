// offload/queue.hpp — queue<T>, lifo_queue<T> and priority_queue<T, Compare>
// (asyncio.Queue, LifoQueue, PriorityQueue): queues between tasks of one
// event loop, optionally bounded. A full queue suspends put() (backpressure);
// an item put while a task waits in get() is handed to it directly;
// task_done() and join() track when every item put has been processed;
// shutdown() ends the queue (asyncio 3.13). The three share one skeleton,
// basic_queue, and differ only in their storage policy (which item
// get() takes). Waiting allocates nothing: each awaiter is its wait-list node
// (a put() awaiter carries its item).
#pragma once

#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/tasks/list_waiter.hpp>
#include <offload/errors.hpp>

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace offload {

namespace detail {

// Storage policies: push(T&&) stores an item; pop() removes and returns the
// item get() hands out next; restore(T&&) puts back an item pop() returned
// (a get cancelled before it ran), so that it comes out where it would have;
// size(), empty(), clear().

/// First in, first out (queue<T>).
template <class T>
class fifo_storage {
public:
    void push(T&& v) { items_.push_back(std::move(v)); }
    T pop() {
        T v = std::move(items_.front());
        items_.pop_front();
        return v;
    }
    // Puts back an item handed out by pop(): it comes out next again.
    void restore(T&& v) { items_.push_front(std::move(v)); }
    std::size_t size() const noexcept { return items_.size(); }
    /// True if the queue holds no item.
    bool empty() const noexcept { return items_.empty(); }
    void clear() noexcept { items_.clear(); }

private:
    std::deque<T> items_;
};

/// Last in, first out (lifo_queue<T>).
template <class T>
class lifo_storage {
public:
    void push(T&& v) { items_.push_back(std::move(v)); }
    T pop() {
        T v = std::move(items_.back());
        items_.pop_back();
        return v;
    }
    void restore(T&& v) { push(std::move(v)); } // back on top
    std::size_t size() const noexcept { return items_.size(); }
    /// True if the queue holds no item.
    bool empty() const noexcept { return items_.empty(); }
    void clear() noexcept { items_.clear(); }

private:
    std::vector<T> items_;
};

/// Smallest first under Compare (priority_queue<T, Compare>): a binary heap
/// (std::push_heap / pop_heap) ordered by the reversed comparison, so that its
/// top is an item no other item is less than, as Python's heapq.
template <class T, class Compare>
class heap_storage {
public:
    explicit heap_storage(Compare comp = Compare()) : comp_(std::move(comp)) {}
    void push(T&& v) {
        items_.push_back(std::move(v));
        std::push_heap(items_.begin(), items_.end(), greater{&comp_});
    }
    T pop() {
        std::pop_heap(items_.begin(), items_.end(), greater{&comp_});
        T v = std::move(items_.back());
        items_.pop_back();
        return v;
    }
    void restore(T&& v) { push(std::move(v)); } // back into the heap
    std::size_t size() const noexcept { return items_.size(); }
    /// True if the queue holds no item.
    bool empty() const noexcept { return items_.empty(); }
    void clear() noexcept { items_.clear(); }

private:
    struct greater {
        Compare* comp;
        bool operator()(const T& a, const T& b) const { return (*comp)(b, a); }
    };
    std::vector<T> items_;
    Compare comp_;
};
} // namespace detail

/// The one skeleton of queue, lifo_queue and priority_queue (use those; this
/// class is public so that their shared API is documented in one place);
/// `Storage` decides which item get() takes. See queue<T> for the contract.
///
/// State: `items_`; `getters_` (tasks waiting in get(), each with an empty
/// slot) and `handed_` (getters handed an item whose task has not run yet);
/// `putters_` (tasks waiting in put(), each carrying its item) and `granted_`
/// (putters granted a slot whose task has not run yet: `reserved_` slots, each
/// filled with the putter's item when it runs); `joiners_`; the shut-down flags.
/// Invariants: getters wait only while items_ is empty; putters wait only while
/// the queue is full (items_ plus reserved slots reach maxsize); nobody waits
/// in get() or put() after shutdown. Every hand-off keeps them: put() gives its
/// item to the oldest getter; a get() that frees room grants the slot to the
/// oldest putter. A served waiter holds what it was handed (an item, or a
/// reserved slot) before it runs, so nobody barges in.
///
/// Cancellation after a hand-off, before the task ran (asyncio's model, see
/// list_waiter.hpp): the get() throws cancelled_error and gives its item back —
/// to the oldest getter, else where it came from (the front of a FIFO, the top
/// of a LIFO, into the heap), even if the queue has filled up meanwhile (it may
/// then hold more than maxsize items until gets take them; put() waits
/// meanwhile). The put() throws cancelled_error without having put its item,
/// and its slot goes to the next putter, else back to free room.
template <class T, class Storage>
class basic_queue {
    static_assert(std::is_move_constructible_v<T>, "offload queues need a move-constructible T");

public:
    /// Awaiter of get(): the wait-list node with the slot an item is handed into.
    /// Cancellation: a cancelled get() took no item; one cancelled after it was
    /// handed an item, before its task ran, gives the item back.
    struct get_awaiter final : detail::list_waiter<get_awaiter> {
        basic_queue* q; ///< The queue waited on.
        std::optional<T> slot; ///< The item handed over; stays empty when shutdown() wakes the getter.

        /// Waits on `qu`; `loc` is the caller, for debug-mode reports.
        get_awaiter(basic_queue* qu, std::source_location loc) noexcept
            : detail::list_waiter<get_awaiter>(loc), q(qu) {}
        /// Moves an awaiter that is not waiting yet.
        get_awaiter(get_awaiter&& o) noexcept : detail::list_waiter<get_awaiter>(std::move(o)), q(o.q) {}
        // A frame destroyed after it was handed an item and before it ran
        // (loop teardown) puts the item back, if the queue still exists (it
        // unlinks us from handed_ when it dies).
        ~get_awaiter() {
            if (this->served && this->linked()) {
                this->unlink();
                try {
                    q->items_.restore(std::move(*slot));
                } catch (...) { // out of memory at teardown: the item is dropped
                }
            }
        }

        /// Takes an item at once if there is one; ready too when the queue is empty and shut down (resume throws).
        bool await_ready() {
            if (!q->items_.empty()) {
                slot.emplace(q->take());
                return true;
            }
            return q->shut_down_; // empty and shut down: throw
        }
        /// Joins the line of waiting getters.
        bool await_suspend(std::coroutine_handle<> h) { return this->suspend_in(q->getters_, h); }
        /// The item; throws queue_shut_down when none will come, cancelled_error when cancelled.
        T await_resume() {
            this->unlink(); // leaves handed_: the item is ours
            this->finish_wait();
            if (!slot) throw queue_shut_down();
            return std::move(*slot);
        }
        /// Cancelled after the hand-off, before the task ran: the item goes back.
        void give_back() noexcept {
            this->unlink();
            if (slot) {
                q->give_back_item(std::move(*slot));
                slot.reset();
            }
        }
    };

    /// Awaiter of put(): the wait-list node, carrying the item until it goes
    /// in. Cancellation: a cancelled put() did not put its item, also when it
    /// was granted a slot and its task had not run yet (the slot is passed on).
    struct put_awaiter final : detail::list_waiter<put_awaiter> {
        basic_queue* q; ///< The queue waited on.
        T item; ///< The item to put, carried until it goes in.
        bool refused = false; ///< The queue was shut down: the item was not put.
        bool granted = false; ///< A slot is reserved for the item (in q->granted_) until the task runs.

        /// Waits to put `v` into `qu`; `loc` is the caller, for debug-mode reports.
        put_awaiter(basic_queue* qu, T&& v, std::source_location loc)
            : detail::list_waiter<put_awaiter>(loc), q(qu), item(std::move(v)) {}
        /// Moves an awaiter that is not waiting yet, with its item.
        put_awaiter(put_awaiter&& o) noexcept(std::is_nothrow_move_constructible_v<T>)
            : detail::list_waiter<put_awaiter>(std::move(o)), q(o.q), item(std::move(o.item)) {}
        // A frame destroyed while it holds a reserved slot (loop teardown)
        // frees the slot, if the queue still exists; nobody is woken.
        ~put_awaiter() {
            if (granted && this->linked()) {
                this->unlink();
                --q->reserved_;
            }
        }

        /// Puts the item at once if there is room (or refuses it after shutdown()).
        bool await_ready() {
            if (q->shut_down_) {
                refused = true;
                return true;
            }
            return q->offer(item);
        }
        /// Joins the line of waiting putters.
        bool await_suspend(std::coroutine_handle<> h) { return this->suspend_in(q->putters_, h); }
        /// Fills the granted slot; throws queue_shut_down if the item was refused, cancelled_error when cancelled.
        void await_resume() {
            const bool had_slot = std::exchange(granted, false);
            this->unlink(); // leaves granted_
            this->finish_wait();
            if (had_slot && !q->fill_reserved(std::move(item))) refused = true;
            if (refused) throw queue_shut_down();
        }
        /// Cancelled after it was granted a slot (or refused), before the task ran: the slot is passed on.
        void give_back() noexcept {
            if (!std::exchange(granted, false)) return;
            this->unlink();
            q->release_slot();
        }
    };

    /// Awaiter of join(): waits until every item put has been marked task_done().
    struct join_awaiter final : detail::list_waiter<join_awaiter> {
        basic_queue* q; ///< The queue waited on.

        /// Waits on `qu`; `loc` is the caller, for debug-mode reports.
        join_awaiter(basic_queue* qu, std::source_location loc) noexcept
            : detail::list_waiter<join_awaiter>(loc), q(qu) {}
        /// Moves an awaiter that is not waiting yet.
        join_awaiter(join_awaiter&& o) noexcept : detail::list_waiter<join_awaiter>(std::move(o)), q(o.q) {}

        /// Ready at once when every item put is done.
        bool await_ready() const noexcept { return q->unfinished_ == 0; }
        /// Joins the line of waiting joiners.
        bool await_suspend(std::coroutine_handle<> h) { return this->suspend_in(q->joiners_, h); }
    };

    basic_queue(const basic_queue&) = delete;
    basic_queue& operator=(const basic_queue&) = delete;

    /// Awaits room and puts `item`: returns at once unless the queue is full.
    /// Throws queue_shut_down if the queue is shut down, or is shut down while
    /// this put() waits (the item is then not put).
    /// Cancellation: a cancelled put did not put its item — also one granted
    /// room whose task had not run yet (the room goes to the next put()).
    [[nodiscard]] put_awaiter put(T item, std::source_location loc = std::source_location::current()) {
        return put_awaiter(this, std::move(item), loc);
    }

    /// Awaits an item and removes it from the queue: returns at once unless it
    /// is empty. After shutdown() it still returns the items left, then throws
    /// queue_shut_down (a waiting get() is woken with it).
    /// Cancellation: a cancelled get took no item — also one handed an item
    /// whose task had not run yet (the item goes back, to the next get()).
    [[nodiscard]] get_awaiter get(std::source_location loc = std::source_location::current()) noexcept {
        return get_awaiter(this, loc);
    }

    /// Puts `item` if there is room now and returns true; returns false (and
    /// leaves `item` untouched) if the queue is full. Throws queue_shut_down
    /// after shutdown().
    [[nodiscard]] bool try_put(T&& item) {
        check_thread("queue::try_put");
        if (shut_down_) throw queue_shut_down();
        return offer(item);
    }
    /// Copies `item` in if there is room now (see the overload above).
    [[nodiscard]] bool try_put(const T& item)
        requires std::is_copy_constructible_v<T>
    {
        check_thread("queue::try_put");
        if (shut_down_) throw queue_shut_down();
        if (full()) return false;
        T copy(item);
        return offer(copy);
    }

    /// Removes and returns the next item, or std::nullopt if the queue is empty.
    /// After shutdown(), an empty queue throws queue_shut_down instead (no
    /// item will ever come).
    std::optional<T> try_get() {
        check_thread("queue::try_get");
        if (items_.empty()) {
            if (shut_down_) throw queue_shut_down();
            return std::nullopt;
        }
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
        if (--unfinished_ == 0) wake_joiners();
    }

    /// Awaits the moment every item put has been marked task_done() (at once if so now).
    [[nodiscard]] join_awaiter join(std::source_location loc = std::source_location::current()) noexcept {
        return join_awaiter(this, loc);
    }

    /// Shuts the queue down (asyncio 3.13): put() and try_put() throw
    /// queue_shut_down from now on, and so do the put() calls waiting now
    /// (their items are not put; also those granted room whose task has not
    /// run yet). get() still returns the items left, then throws
    /// queue_shut_down; get() calls waiting now (the queue is empty) throw it
    /// at once. With `immediate`, the items left are dropped at once, each
    /// counting as task_done() (so join() returns when the items already taken
    /// are done), and every get() throws. Calling it again is harmless;
    /// shutdown(true) after shutdown() drops the items left.
    void shutdown(bool immediate = false) {
        check_thread("queue::shutdown");
        shut_down_ = true;
        if (immediate) {
            drop_all_ = true;
            if (!items_.empty()) {
                const std::size_t dropped = items_.size();
                items_.clear();
                unfinished_ -= std::min(unfinished_, dropped);
                if (unfinished_ == 0) wake_joiners();
            }
        }
        while (get_awaiter* g = getters_.pop_front()) g->serve(); // empty slot: throws
        while (put_awaiter* p = putters_.pop_front()) {
            p->refused = true;
            p->serve();
        }
    }

    /// True once shutdown() was called.
    bool is_shut_down() const noexcept { return shut_down_; }
    /// Number of items in the queue (not counting items of put() calls that
    /// wait, or that were granted room and have not run yet).
    std::size_t size() const noexcept { return items_.size(); }
    /// True if the queue holds no item.
    bool empty() const noexcept { return items_.empty(); }
    /// True if put() would wait (never for an unbounded queue): the items,
    /// plus the room granted to put() calls that have not run yet, reach maxsize.
    bool full() const noexcept { return maxsize_ != 0 && items_.size() + reserved_ >= maxsize_; }
    /// The bound given at construction (0: unbounded).
    std::size_t maxsize() const noexcept { return maxsize_; }

protected:
    /// A queue of at most `maxsize` items (0: unbounded); `storage_args`
    /// construct the storage in place (a comparator, for the heap).
    template <class... A>
    explicit basic_queue(std::size_t maxsize,
                         A&&... storage_args) noexcept(std::is_nothrow_constructible_v<Storage, A...>)
        : maxsize_(maxsize), items_(std::forward<A>(storage_args)...) {}
    /// Destroying a queue that tasks still wait on is a bug; the waiters are
    /// detached so that their frames can still be destroyed safely.
    ~basic_queue() {
        getters_.clear();
        handed_.clear();
        putters_.clear();
        granted_.clear();
        joiners_.clear();
    }

private:
    // Puts `item` if there is room now: to the oldest getter (the queue is then
    // empty), else into items_. Moves from `item` only on success.
    bool offer(T& item) {
        if (full()) return false; // also: slots reserved for putters come first
        deliver(std::move(item));
        return true;
    }

    // A new item (counted unfinished) goes in: to the oldest getter, else into items_.
    void deliver(T&& item) {
        if (get_awaiter* g = getters_.pop_front())
            hand(g, std::move(item));
        else
            items_.push(std::move(item));
        ++unfinished_;
    }

    void hand(get_awaiter* g, T&& item) {
        g->slot.emplace(std::move(item));
        handed_.push_back(g);
        g->serve();
    }

    // An item handed to a getter that was cancelled before it ran (it stays
    // counted unfinished): to the oldest getter, else back where it came from.
    void give_back_item(T&& item) {
        if (get_awaiter* g = getters_.pop_front())
            hand(g, std::move(item));
        else if (drop_all_) // shutdown(true) dropped the items left: so is this one
            finish_one();
        else
            items_.restore(std::move(item));
    }

    // Removes the next item; the room it frees goes to the oldest putter.
    T take() {
        T v = items_.pop();
        grant_room();
        return v;
    }

    // Grants free room to waiting putters, oldest first: each holds a slot until it runs.
    void grant_room() {
        while (!full()) {
            put_awaiter* p = putters_.pop_front();
            if (!p) break;
            p->granted = true;
            ++reserved_;
            granted_.push_back(p);
            p->serve();
        }
    }

    // A granted putter runs: its item fills its slot (false, and the slot is
    // freed, if the queue was shut down meanwhile).
    bool fill_reserved(T&& item) {
        --reserved_;
        if (shut_down_) return false;
        deliver(std::move(item));
        grant_room(); // if it went to a getter, its slot is free again
        return true;
    }

    // A granted putter cancelled before it ran: the slot goes to the next putter.
    void release_slot() noexcept {
        --reserved_;
        grant_room();
    }

    void finish_one() {
        if (unfinished_ > 0 && --unfinished_ == 0) wake_joiners();
    }

    void wake_joiners() {
        while (join_awaiter* w = joiners_.pop_front()) w->serve();
    }

    void check_thread(const char* what) const {
        detail::check_waiters_thread(getters_, what);
        detail::check_waiters_thread(handed_, what);
        detail::check_waiters_thread(putters_, what);
        detail::check_waiters_thread(granted_, what);
        detail::check_waiters_thread(joiners_, what);
    }

    std::size_t maxsize_;
    std::size_t unfinished_ = 0; // items put and not yet marked task_done()
    std::size_t reserved_ = 0; // slots granted to putters in granted_
    bool shut_down_ = false;
    bool drop_all_ = false; // shutdown(true) was called
    Storage items_;
    detail::intrusive_list<get_awaiter> getters_;
    detail::intrusive_list<get_awaiter> handed_;
    detail::intrusive_list<put_awaiter> putters_;
    detail::intrusive_list<put_awaiter> granted_;
    detail::intrusive_list<join_awaiter> joiners_;
};

/// A FIFO queue for tasks of one event loop (asyncio.Queue). T may be move-only.
///
/// Fairness: waiting getters and putters are served in FIFO order, by hand-off:
/// an item put while tasks wait in get() goes to the oldest of them, even if
/// another task calls get() before that one runs; a get() from a full queue
/// reserves the room it frees for the oldest waiting put(), whose item goes in
/// when that task runs (full() stays true meanwhile: try_put cannot barge in).
///
/// Thread safety: loop-local; not thread-safe (from another thread, go through
/// event_loop::call_soon_threadsafe). It may be constructed outside a loop. In
/// debug mode, a call from another thread while tasks wait on it throws
/// std::logic_error.
/// Cancellation (asyncio's model): a cancelled put() throws cancelled_error and
/// did not put its item (it is destroyed with the awaiter); a cancelled get()
/// throws cancelled_error and took no item. This holds until the task resumes:
/// a get() handed an item whose task has not run yet gives the item back (to
/// the next waiting get(), else to the front of the queue, where the next
/// get() takes it), and a put() granted room gives the room to the next put().
/// Once the task has resumed, the item is its own, and a cancellation is
/// thrown at its next await. No item is ever lost or duplicated.
/// Shutdown: see shutdown(); consumers typically loop until get() throws
/// queue_shut_down.
/// Example: `co_await q.put(job);` in producers, `auto job = co_await q.get(); …; q.task_done();` in workers.
template <class T>
class queue : public basic_queue<T, detail::fifo_storage<T>> {
public:
    /// A queue holding at most `maxsize` items; 0 means unbounded (as in asyncio).
    explicit queue(std::size_t maxsize = 0) noexcept : basic_queue<T, detail::fifo_storage<T>>(maxsize) {}
};

/// A queue whose get() returns the item put last (asyncio.LifoQueue): a stack
/// between tasks. Same API, fairness, thread safety, cancellation and
/// shutdown as queue<T>; only the order of the items differs. An item put
/// while tasks wait in get() still goes to the oldest waiting getter; one
/// given back by a get() cancelled before it ran goes back on top, so the next
/// get() takes it (asyncio would keep it under the items put after it).
/// Example: `lifo_queue<int> s; s.try_put(1); s.try_put(2); s.try_get(); // 2`
template <class T>
class lifo_queue : public basic_queue<T, detail::lifo_storage<T>> {
public:
    /// A stack holding at most `maxsize` items; 0 means unbounded.
    explicit lifo_queue(std::size_t maxsize = 0) noexcept : basic_queue<T, detail::lifo_storage<T>>(maxsize) {}
};

/// A queue whose get() returns the smallest item (asyncio.PriorityQueue).
/// Same API, fairness, thread safety, cancellation and shutdown as queue<T>.
///
/// Order: get() returns an item `x` such that no item `y` in the queue has
/// `comp(y, x)` — the first item of the queue sorted by Compare. With the
/// default std::less<T> that is the smallest item (as asyncio's heapq, and the
/// opposite of std::priority_queue, whose top is the largest); with
/// std::greater<T> it is the largest. Items that compare equivalent come out
/// in no particular order: put (priority, sequence number) pairs to keep FIFO
/// order among equal priorities. An item put while tasks wait in get() goes
/// to the oldest waiting getter at once (the queue is then empty); one given
/// back by a get() cancelled before it ran goes back into the heap.
/// Example: `priority_queue<std::pair<int, std::string>> jobs; co_await jobs.put({0, "urgent"});`
template <class T, class Compare = std::less<T>>
class priority_queue : public basic_queue<T, detail::heap_storage<T, Compare>> {
public:
    /// A priority queue holding at most `maxsize` items (0: unbounded), ordered by `comp`.
    explicit priority_queue(std::size_t maxsize = 0, Compare comp = Compare())
        : basic_queue<T, detail::heap_storage<T, Compare>>(maxsize, std::move(comp)) {}
};

} // namespace offload
