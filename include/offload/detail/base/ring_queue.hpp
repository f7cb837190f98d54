// offload/detail/base/ring_queue.hpp — a growable FIFO ring buffer (power-of-two
// capacity). The loop's ready queue: push_back and pop_front are a few
// instructions and allocate only when the ring doubles.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace offload::detail {

template <class T>
class ring_queue {
public:
    ring_queue() = default;
    ring_queue(const ring_queue&) = delete;
    ring_queue& operator=(const ring_queue&) = delete;
    ~ring_queue() {
        while (!empty()) pop_front();
        ::operator delete(static_cast<void*>(slots_), std::align_val_t{alignof(T)});
    }

    bool empty() const noexcept { return head_ == tail_; }
    std::size_t size() const noexcept { return tail_ - head_; }

    template <class... A>
    void emplace_back(A&&... a) {
        if (size() == cap_) grow();
        ::new (static_cast<void*>(slots_ + (tail_ & (cap_ - 1)))) T(std::forward<A>(a)...);
        ++tail_;
    }

    T& front() noexcept { return slots_[head_ & (cap_ - 1)]; }

    void pop_front() noexcept {
        front().~T();
        ++head_;
    }

private:
    void grow() {
        std::size_t ncap = cap_ ? cap_ * 2 : 64;
        T* n = static_cast<T*>(::operator new(ncap * sizeof(T), std::align_val_t{alignof(T)}));
        std::size_t count = size();
        for (std::size_t i = 0; i < count; ++i) {
            T& old = slots_[(head_ + i) & (cap_ - 1)];
            ::new (static_cast<void*>(n + i)) T(std::move(old));
            old.~T();
        }
        ::operator delete(static_cast<void*>(slots_), std::align_val_t{alignof(T)});
        slots_ = n;
        cap_ = ncap;
        head_ = 0;
        tail_ = count;
    }

    T* slots_ = nullptr;
    std::size_t cap_ = 0;  // always 0 or a power of two
    std::size_t head_ = 0; // monotonically increasing indices, masked on access
    std::size_t tail_ = 0;
};

} // namespace offload::detail
