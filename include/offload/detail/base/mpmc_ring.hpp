// offload/detail/base/mpmc_ring.hpp — a bounded lock-free multi-producer
// multi-consumer FIFO of pointers (Dmitry Vyukov's bounded MPMC queue): each
// cell carries a sequence number that tells producers and consumers whose turn
// it is, so a push or a pop is one CAS on a shared index plus one store.
#pragma once

#include <offload/detail/base/cpu.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <stdexcept>

namespace offload::detail {

template <class T>
class mpmc_ring {
public:
    /// A ring of `capacity_pow2` cells: a power of two, at least 2 (with one
    /// cell, a full cell's sequence number would read as free on the next lap).
    explicit mpmc_ring(std::size_t capacity_pow2) : cells_(new cell[checked(capacity_pow2)]), mask_(capacity_pow2 - 1) {
        for (std::size_t i = 0; i < capacity_pow2; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
    }

    /// False when the ring is full.
    bool try_push(T* v) noexcept {
        std::size_t pos = enqueue_.load(std::memory_order_relaxed);
        for (;;) {
            cell& c = cells_[pos & mask_];
            std::size_t seq = c.seq.load(std::memory_order_acquire);
            auto diff = static_cast<std::ptrdiff_t>(seq) - static_cast<std::ptrdiff_t>(pos);
            if (diff == 0) {
                if (enqueue_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    c.value = v;
                    c.seq.store(pos + 1, std::memory_order_release); // publishes value to the consumer
                    return true;
                }
            } else if (diff < 0) {
                return false; // the cell still holds an unconsumed value from a lap ago: full
            } else {
                pos = enqueue_.load(std::memory_order_relaxed);
            }
        }
    }

    /// nullptr when the ring is empty.
    T* try_pop() noexcept {
        std::size_t pos = dequeue_.load(std::memory_order_relaxed);
        for (;;) {
            cell& c = cells_[pos & mask_];
            std::size_t seq = c.seq.load(std::memory_order_acquire);
            auto diff = static_cast<std::ptrdiff_t>(seq) - static_cast<std::ptrdiff_t>(pos + 1);
            if (diff == 0) {
                if (dequeue_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    T* v = c.value;
                    c.seq.store(pos + mask_ + 1, std::memory_order_release); // hands the cell to the next lap
                    return v;
                }
            } else if (diff < 0) {
                return nullptr;
            } else {
                pos = dequeue_.load(std::memory_order_relaxed);
            }
        }
    }

    /// A hint: may be stale by the time the caller acts on it.
    bool empty_hint() const noexcept {
        return dequeue_.load(std::memory_order_acquire) >= enqueue_.load(std::memory_order_acquire);
    }

private:
    static std::size_t checked(std::size_t capacity) {
        if (capacity < 2 || (capacity & (capacity - 1)) != 0)
            throw std::invalid_argument("offload: mpmc_ring needs a power-of-two capacity of at least 2");
        return capacity;
    }

    struct cell {
        std::atomic<std::size_t> seq;
        T* value = nullptr;
    };
    std::unique_ptr<cell[]> cells_;
    std::size_t mask_;
    alignas(cache_line) std::atomic<std::size_t> enqueue_{0};
    alignas(cache_line) std::atomic<std::size_t> dequeue_{0};
};

} // namespace offload::detail
