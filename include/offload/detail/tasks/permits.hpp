// offload/detail/tasks/permits.hpp — what semaphore and mutex are both made
// of: a count of free permits and the FIFO of tasks waiting for one.
//
// Invariant: while a task waits, no permit is free — give() hands its permit
// straight to the oldest waiter instead of counting it (direct hand-off), so
// the order is exact FIFO and a task that arrives later never barges in.
#pragma once

#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/tasks/list_waiter.hpp>

#include <coroutine>
#include <cstddef>
#include <source_location>

namespace offload::detail {

class permits {
public:
    /// Waits for one permit. A cancelled wait takes none; a wait already
    /// handed one keeps it and the cancellation is thrown at the next await.
    struct acquire_awaiter : list_waiter<acquire_awaiter> {
        permits* pool;

        acquire_awaiter(permits* p, std::source_location loc) noexcept : list_waiter(loc), pool(p) {}
        acquire_awaiter(acquire_awaiter&& o) noexcept : list_waiter(std::move(o)), pool(o.pool) {}

        // A free permit implies nobody waits (the invariant), so taking it is fair.
        bool await_ready() noexcept { return pool->try_take(); }
        bool await_suspend(std::coroutine_handle<> h) { return suspend_in(pool->waiters_, h); }
    };

    explicit permits(std::size_t n) noexcept : free_(n) {}
    permits(const permits&) = delete;
    permits& operator=(const permits&) = delete;
    /// Waiters left behind (a bug of the owner) are detached, so that their
    /// frames can still be destroyed safely.
    ~permits() { waiters_.clear(); }

    /// Takes a permit if one is free.
    bool try_take() noexcept {
        if (free_ == 0) return false;
        --free_;
        return true;
    }
    /// Returns a permit: to the oldest waiter (it resumes soon), else to the count.
    void give() {
        if (acquire_awaiter* w = waiters_.pop_front())
            w->wake();
        else
            ++free_;
    }
    std::size_t free() const noexcept { return free_; }
    void check_thread(const char* what) const { check_waiters_thread(waiters_, what); }

private:
    std::size_t free_;
    intrusive_list<acquire_awaiter> waiters_;
};

} // namespace offload::detail
