// offload/detail/base/ring_queue.hpp — a FIFO queue of fixed-size chunks
// (the loop's ready queue). push_back and pop_front are a few instructions.
//
// Growth never copies: a full tail chunk links a new one, and a chunk the
// head leaves is kept for reuse, so a queue that once held N items holds
// ceil(N / chunk_slots) chunks and allocates no more. A doubling ring would
// move every item at each growth and touch (first-touch page faults) about
// twice the memory; a burst of a million call_soon on a new loop pays that.
// When the queue empties, both ends go back to the start of the current
// chunk, so a chain of steps that posts one step at a time stays in one
// cache-hot chunk.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace offload::detail {

template <class T>
class ring_queue {
public:
    /// Slots per chunk: 256 of the loop's 48-byte steps are 12 KiB, small
    /// enough for malloc's heap (not an mmap each) and to allocate one for a
    /// loop that queues a few steps.
    static constexpr std::size_t chunk_slots = 256;

    ring_queue() = default;
    ring_queue(const ring_queue&) = delete;
    ring_queue& operator=(const ring_queue&) = delete;
    ~ring_queue() {
        while (!empty()) pop_front();
        while (head_) delete std::exchange(head_, head_->next);
    }

    bool empty() const noexcept { return size_ == 0; }
    std::size_t size() const noexcept { return size_; }
    /// Chunks held (in use or kept for reuse): for tests.
    std::size_t chunks() const noexcept {
        std::size_t n = 0;
        for (chunk* c = head_; c; c = c->next) ++n;
        return n;
    }

    template <class... A>
    void emplace_back(A&&... a) {
        if (tail_idx_ == chunk_slots || !tail_) [[unlikely]]
            add_chunk();
        ::new (static_cast<void*>(tail_->slot(tail_idx_))) T(std::forward<A>(a)...);
        ++tail_idx_;
        ++size_;
    }

    T& front() noexcept { return *std::launder(head_->slot(head_idx_)); }

    void pop_front() noexcept {
        front().~T();
        --size_;
        if (++head_idx_ == chunk_slots || size_ == 0) [[unlikely]]
            advance_head();
    }

private:
    struct chunk {
        chunk* next = nullptr;
        alignas(T) unsigned char storage[chunk_slots * sizeof(T)];
        T* slot(std::size_t i) noexcept { return reinterpret_cast<T*>(storage) + i; }
    };

    // The tail chunk is full (or there is none): move on to the next chunk,
    // a spare one or a new one.
    void add_chunk() {
        if (!tail_) {
            head_ = tail_ = last_ = new chunk;
        } else if (tail_->next) {
            tail_ = tail_->next;
        } else {
            tail_ = tail_->next = last_ = new chunk;
        }
        tail_idx_ = 0;
    }

    // The head left its chunk, or the queue emptied.
    void advance_head() noexcept {
        if (size_ == 0) {
            // Empty: head and tail are at the same place in one chunk (the
            // tail only leaves a chunk to push into the next). Start over.
            head_idx_ = tail_idx_ = 0;
            return;
        }
        // Items remain, so they are in a later chunk. The one left goes to the
        // end of the list: spares are reused in the order they were first
        // filled (ascending addresses, as the first burst wrote them).
        chunk* done = head_;
        head_ = done->next;
        head_idx_ = 0;
        done->next = nullptr;
        last_->next = done;
        last_ = done;
    }

    // One list: head_ ... tail_ hold the items, the chunks after tail_ (up to
    // last_) are spares the head left, kept for reuse.
    chunk* head_ = nullptr;
    chunk* tail_ = nullptr;
    chunk* last_ = nullptr;
    std::size_t head_idx_ = 0;
    std::size_t tail_idx_ = 0;
    std::size_t size_ = 0;
};

} // namespace offload::detail
