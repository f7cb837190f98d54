// offload/detail/base/timer_heap.hpp — the loop's timers: an indexed binary
// min-heap of intrusive nodes. Each node knows its slot, so cancelling a timer
// removes it at once in O(log n): cancelled timers never pile up (asyncio
// keeps them until they reach the top, and has to compact the heap).
// Ties are broken by insertion order, so timers due at the same instant run FIFO.
#pragma once

#include <offload/detail/base/clock.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace offload::detail {

struct timer_node {
    static constexpr std::size_t not_queued = static_cast<std::size_t>(-1);

    clock::time_point deadline{};
    std::uint64_t seq = 0;
    std::size_t index = not_queued;

    bool queued() const noexcept { return index != not_queued; }
    /// Called by the loop when the deadline has passed; the node is already out of the heap.
    virtual void fire() = 0;
    /// Called instead of fire() when the loop is destroyed with the timer still queued.
    virtual void discard() noexcept {}

protected:
    ~timer_node() = default;
};

class timer_heap {
public:
    bool empty() const noexcept { return heap_.empty(); }
    std::size_t size() const noexcept { return heap_.size(); }
    timer_node* top() const noexcept { return heap_.front(); }

    void push(timer_node* n) {
        n->seq = next_seq_++;
        n->index = heap_.size();
        heap_.push_back(n);
        sift_up(n->index);
    }

    /// Removes `n` wherever it is; a no-op if it is not queued.
    void erase(timer_node* n) noexcept {
        if (!n->queued()) return;
        std::size_t i = n->index;
        n->index = timer_node::not_queued;
        timer_node* last = heap_.back();
        heap_.pop_back();
        if (last == n) return;
        heap_[i] = last;
        last->index = i;
        if (i > 0 && less(last, heap_[(i - 1) / 2]))
            sift_up(i);
        else
            sift_down(i);
    }

    timer_node* pop() noexcept {
        timer_node* n = heap_.front();
        erase(n);
        return n;
    }

private:
    static bool less(const timer_node* a, const timer_node* b) noexcept {
        return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
    }

    void place(std::size_t i, timer_node* n) noexcept {
        heap_[i] = n;
        n->index = i;
    }

    void sift_up(std::size_t i) noexcept {
        timer_node* n = heap_[i];
        while (i > 0) {
            std::size_t p = (i - 1) / 2;
            if (!less(n, heap_[p])) break;
            place(i, heap_[p]);
            i = p;
        }
        place(i, n);
    }

    void sift_down(std::size_t i) noexcept {
        timer_node* n = heap_[i];
        const std::size_t size = heap_.size();
        for (;;) {
            std::size_t c = 2 * i + 1;
            if (c >= size) break;
            if (c + 1 < size && less(heap_[c + 1], heap_[c])) ++c;
            if (!less(heap_[c], n)) break;
            place(i, heap_[c]);
            i = c;
        }
        place(i, n);
    }

    std::vector<timer_node*> heap_;
    std::uint64_t next_seq_ = 0;
};

} // namespace offload::detail
