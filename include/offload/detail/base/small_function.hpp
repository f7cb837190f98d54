// offload/detail/base/small_function.hpp — a move-only `void()` callable with inline
// storage, used for every callback the loop queues. Callables up to
// `inline_size` bytes (a coroutine handle plus a context pointer, a lambda
// with a few captures) live inside the object, so queueing them allocates
// nothing; larger ones go to the heap.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace offload::detail {

class small_function {
public:
    static constexpr std::size_t inline_size = 4 * sizeof(void*);

    small_function() noexcept = default;

    template <class F>
        requires(!std::is_same_v<std::decay_t<F>, small_function> && std::is_invocable_v<std::decay_t<F>&>)
    small_function(F&& f) { // NOLINT: implicit on purpose, like std::function
        using D = std::decay_t<F>; // a function (not a pointer to it) is stored as a pointer, as std::function does
        if constexpr (fits<D>) {
            ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
            ops_ = &inline_ops<D>;
        } else {
            *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
            ops_ = &heap_ops<D>;
        }
    }

    small_function(small_function&& o) noexcept : ops_(o.ops_) {
        if (ops_) {
            ops_->relocate(o.buf_, buf_);
            o.ops_ = nullptr;
        }
    }

    small_function& operator=(small_function&& o) noexcept {
        if (this != &o) {
            reset();
            ops_ = o.ops_;
            if (ops_) {
                ops_->relocate(o.buf_, buf_);
                o.ops_ = nullptr;
            }
        }
        return *this;
    }

    small_function(const small_function&) = delete;
    small_function& operator=(const small_function&) = delete;
    ~small_function() { reset(); }

    explicit operator bool() const noexcept { return ops_ != nullptr; }

    /// Calls the stored callable; it stays stored (callable again).
    void operator()() { ops_->invoke(buf_); }

    void reset() noexcept {
        if (ops_) {
            ops_->destroy(buf_);
            ops_ = nullptr;
        }
    }

private:
    struct ops_t {
        void (*invoke)(void*);
        void (*relocate)(void* from, void* to) noexcept; // move-construct into `to`, destroy `from`
        void (*destroy)(void*) noexcept;
    };

    template <class D>
    static constexpr bool fits = sizeof(D) <= inline_size && alignof(D) <= alignof(std::max_align_t) &&
                                 std::is_nothrow_move_constructible_v<D>;

    template <class D>
    static constexpr ops_t inline_ops{
        [](void* p) { (*std::launder(static_cast<D*>(p)))(); },
        [](void* from, void* to) noexcept {
            D* f = std::launder(static_cast<D*>(from));
            ::new (to) D(std::move(*f));
            f->~D();
        },
        [](void* p) noexcept { std::launder(static_cast<D*>(p))->~D(); },
    };

    template <class D>
    static constexpr ops_t heap_ops{
        [](void* p) { (**static_cast<D**>(p))(); },
        [](void* from, void* to) noexcept { *static_cast<D**>(to) = *static_cast<D**>(from); },
        [](void* p) noexcept { delete *static_cast<D**>(p); },
    };

    alignas(std::max_align_t) unsigned char buf_[inline_size];
    const ops_t* ops_ = nullptr;
};

} // namespace offload::detail
