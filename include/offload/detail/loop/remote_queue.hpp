// offload/detail/loop/remote_queue.hpp — how other threads reach a loop: a
// lock-free Treiber stack of intrusive nodes (an executor embeds the node in
// its work item, so posting a completion allocates nothing), and an eventfd
// written only when the loop sleeps.
//
// Sleeping and posting pair up like Dekker's algorithm: the loop publishes
// `sleeping_ = true` and then re-reads the stack; a producer publishes its
// node and then reads `sleeping_`. With seq_cst on both sides at least one
// sees the other, so either the loop finds the node before it sleeps or the
// producer wakes it; the exchange on `sleeping_` makes only one producer pay
// for the eventfd write.
#pragma once

#include <offload/detail/base/cpu.hpp>

#include <atomic>
#include <cstdint>
#include <unistd.h>
#include <utility>

namespace offload::detail {

/// A completion posted to a loop from another thread.
struct remote_node {
    remote_node* next = nullptr;
    /// Runs on the loop thread, as one step.
    virtual void run_on_loop() = 0;
    /// The loop is destroyed before running the node.
    virtual void discard() noexcept = 0;

protected:
    ~remote_node() = default;
};

class remote_queue {
public:
    /// `wakefd` is the loop's eventfd (owned by the loop).
    explicit remote_queue(int wakefd) noexcept : wakefd_(wakefd) {}
    remote_queue(const remote_queue&) = delete;
    remote_queue& operator=(const remote_queue&) = delete;

    /// Any thread: posts `n`; never blocks, never allocates.
    void push(remote_node* n) noexcept {
        // Once the node is visible the loop may run it, finish and be destroyed
        // while we still read sleeping_ and write the eventfd: the loop's
        // destructor waits (wait_for_producers) until no producer is between
        // these two counter updates.
        posting_.fetch_add(1, std::memory_order_seq_cst);
        remote_node* head = head_.load(std::memory_order_relaxed);
        do {
            n->next = head;
        } while (!head_.compare_exchange_weak(head, n, std::memory_order_seq_cst, std::memory_order_relaxed));
        if (sleeping_.load(std::memory_order_seq_cst) && sleeping_.exchange(false, std::memory_order_seq_cst)) {
            std::uint64_t one = 1;
            [[maybe_unused]] auto r = ::write(wakefd_, &one, sizeof one);
        }
        posting_.fetch_sub(1, std::memory_order_release);
    }

    /// True when something was posted (a hint: a push may be under way).
    bool has_posts() const noexcept { return head_.load(std::memory_order_acquire) != nullptr; }

    /// Loop thread: about to sleep. Returns false when a node arrived in the
    /// meantime (then do not sleep). Call woke() after the wait either way.
    bool prepare_sleep() noexcept {
        sleeping_.store(true, std::memory_order_seq_cst);
        return head_.load(std::memory_order_seq_cst) == nullptr;
    }
    void woke() noexcept { sleeping_.store(false, std::memory_order_relaxed); }

    /// Loop thread: takes everything posted so far, oldest first.
    remote_node* take_all() noexcept {
        if (head_.load(std::memory_order_relaxed) == nullptr) return nullptr;
        remote_node* n = head_.exchange(nullptr, std::memory_order_acquire);
        remote_node* fifo = nullptr; // the stack is LIFO; reverse it
        while (n) fifo = std::exchange(n, std::exchange(n->next, fifo));
        return fifo;
    }

    /// Loop teardown: waits until no producer is inside push().
    void wait_for_producers() const noexcept {
        while (posting_.load(std::memory_order_acquire) != 0) cpu_relax();
    }

private:
    std::atomic<remote_node*> head_{nullptr};
    std::atomic<int> posting_{0}; // producers inside push()
    std::atomic<bool> sleeping_{false};
    int wakefd_;
};

} // namespace offload::detail
