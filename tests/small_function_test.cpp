// Tests for offload/detail/base/small_function.hpp: empty and non-empty, which
// callables live inline and which on the heap, move-only callables, moves that
// leave the source empty, captures destroyed exactly once, reset(), and
// exceptions thrown by the callable.
#include <offload/detail/base/small_function.hpp>

#include "counted.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

using offload::detail::small_function;
using offload::test::counted;

namespace {

/// True if `p` lies inside the small_function object itself (inline storage).
bool inside(const small_function& f, const void* p) {
    auto b = reinterpret_cast<std::uintptr_t>(&f), a = reinterpret_cast<std::uintptr_t>(p);
    return a >= b && a < b + sizeof(small_function);
}

/// A callable of exactly `Size` bytes that records where it was called from.
template <std::size_t Size>
struct where_probe {
    const void** where;
    std::array<char, Size - sizeof(const void**)> pad{};
    void operator()() { *where = this; }
};

/// Small, but its move may throw: must not go inline (relocation is noexcept).
struct throwing_move_probe {
    const void** where;
    throwing_move_probe(const void** w) : where(w) {}
    throwing_move_probe(throwing_move_probe&& o) noexcept(false) : where(o.where) {}
    void operator()() { *where = this; }
};

/// Small, but more aligned than the inline buffer.
struct alignas(2 * alignof(std::max_align_t)) overaligned_probe {
    const void** where;
    void operator()() { *where = this; }
};

int free_calls = 0;
void free_function() { ++free_calls; }

} // namespace

TEST_CASE("small_function: type properties", "[small_function]") {
    STATIC_REQUIRE(std::is_nothrow_default_constructible_v<small_function>);
    STATIC_REQUIRE(std::is_nothrow_move_constructible_v<small_function>);
    STATIC_REQUIRE(std::is_nothrow_move_assignable_v<small_function>);
    STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<small_function>);
    STATIC_REQUIRE_FALSE(std::is_copy_assignable_v<small_function>);
    STATIC_REQUIRE_FALSE(std::is_constructible_v<small_function, int>); // not invocable
    STATIC_REQUIRE_FALSE(std::is_constructible_v<small_function, void (*)(int)>);
    STATIC_REQUIRE(std::is_convertible_v<void (*)(), small_function>); // implicit, like std::function
    STATIC_REQUIRE(small_function::inline_size == 4 * sizeof(void*));
}

TEST_CASE("small_function: a default-constructed one is empty", "[small_function]") {
    small_function f;
    REQUIRE_FALSE(static_cast<bool>(f));
    f.reset(); // reset of an empty one is fine
    REQUIRE_FALSE(static_cast<bool>(f));
    small_function g(std::move(f));
    REQUIRE_FALSE(static_cast<bool>(f));
    REQUIRE_FALSE(static_cast<bool>(g));
    f = std::move(g);
    REQUIRE_FALSE(static_cast<bool>(f));
}

TEST_CASE("small_function: a stored callable can be called many times and keeps its state", "[small_function]") {
    int calls = 0;
    small_function f([&calls, n = 0]() mutable { calls = ++n; });
    REQUIRE(static_cast<bool>(f));
    f();
    f();
    f();
    REQUIRE(calls == 3);
    REQUIRE(static_cast<bool>(f));
}

TEST_CASE("small_function: function pointers and callables that return a value", "[small_function]") {
    free_calls = 0;
    small_function f(&free_function);
    f();
    small_function g = &free_function; // implicit conversion
    g();
    REQUIRE(free_calls == 2);
    int got = 0;
    small_function h([&got] { return got = 42; }); // the result is discarded
    h();
    REQUIRE(got == 42);
}

TEST_CASE("small_function: callables up to inline_size live inline, larger ones on the heap", "[small_function]") {
    const void* where = nullptr;
    SECTION("a pointer-sized callable is inline") {
        small_function f(where_probe<sizeof(void*)>{&where});
        f();
        REQUIRE(inside(f, where));
    }
    SECTION("exactly inline_size bytes is inline") {
        STATIC_REQUIRE(sizeof(where_probe<small_function::inline_size>) == small_function::inline_size);
        small_function f(where_probe<small_function::inline_size>{&where});
        f();
        REQUIRE(inside(f, where));
    }
    SECTION("one pointer more than inline_size goes to the heap") {
        small_function f(where_probe<small_function::inline_size + sizeof(void*)>{&where});
        f();
        REQUIRE(where != nullptr);
        REQUIRE_FALSE(inside(f, where));
    }
    SECTION("a callable whose move may throw goes to the heap") {
        small_function f(throwing_move_probe{&where});
        f();
        REQUIRE(where != nullptr);
        REQUIRE_FALSE(inside(f, where));
    }
    SECTION("an over-aligned callable goes to the heap, still aligned") {
        small_function f(overaligned_probe{&where});
        f();
        REQUIRE(where != nullptr);
        REQUIRE_FALSE(inside(f, where));
        REQUIRE(reinterpret_cast<std::uintptr_t>(where) % alignof(overaligned_probe) == 0);
    }
}

TEST_CASE("small_function: move-only callables, inline and on the heap", "[small_function]") {
    int out = 0;
    small_function small([p = std::make_unique<int>(7), &out] { out += *p; });
    small_function big([p = std::make_unique<int>(100), &out, pad = std::array<char, 64>{}] { out += *p + pad[0]; });
    small();
    big();
    REQUIRE(out == 107);
    small_function moved_small(std::move(small));
    small_function moved_big(std::move(big));
    moved_small();
    moved_big();
    REQUIRE(out == 214);
}

TEST_CASE("small_function: move construction and assignment leave the source empty", "[small_function]") {
    int calls = 0;
    auto inline_fn = [&calls] { ++calls; };
    auto heap_fn = [&calls, pad = std::array<char, 64>{}] { calls += 1 + pad[0]; };
    STATIC_REQUIRE(sizeof(inline_fn) <= small_function::inline_size);
    STATIC_REQUIRE(sizeof(heap_fn) > small_function::inline_size);

    // Move construction, then move assignment, each leaving the source empty.
    auto moves_leave_the_source_empty = [&](small_function a) {
        small_function b(std::move(a));
        REQUIRE_FALSE(static_cast<bool>(a));
        REQUIRE(static_cast<bool>(b));
        b();
        small_function c;
        c = std::move(b);
        REQUIRE_FALSE(static_cast<bool>(b));
        c();
        REQUIRE(calls == 2);
    };
    SECTION("inline") { moves_leave_the_source_empty(small_function(inline_fn)); }
    SECTION("heap") { moves_leave_the_source_empty(small_function(heap_fn)); }
    SECTION("a moved-from one can be assigned again") {
        small_function a(inline_fn);
        small_function b(std::move(a));
        a = small_function(heap_fn);
        REQUIRE(static_cast<bool>(a));
        a();
        b();
        REQUIRE(calls == 2);
    }
    SECTION("self move-assignment keeps the callable") {
        small_function a(inline_fn);
        small_function& alias = a;
        a = std::move(alias);
        REQUIRE(static_cast<bool>(a));
        a();
        REQUIRE(calls == 1);
    }
}

TEST_CASE("small_function: captures are destroyed exactly once", "[small_function]") {
    counted::reset();
    SECTION("inline: through moves and destruction") {
        {
            small_function a([c = counted{}] { (void)c; });
            REQUIRE(counted::live() == 1);
            small_function b(std::move(a)); // relocates: a new capture, the old one destroyed
            REQUIRE(counted::live() == 1);
            small_function c;
            c = std::move(b);
            REQUIRE(counted::live() == 1);
            c();
        }
        REQUIRE(counted::live() == 0);
    }
    SECTION("heap: moves steal the pointer and copy nothing") {
        {
            small_function a([c = counted{}, pad = std::array<char, 64>{}] { (void)c, (void)pad; });
            REQUIRE(counted::live() == 1);
            const int constructed = counted::constructed();
            small_function b(std::move(a));
            small_function c;
            c = std::move(b);
            REQUIRE(counted::constructed() == constructed);
            REQUIRE(counted::live() == 1);
        }
        REQUIRE(counted::live() == 0);
    }
    SECTION("move-assigning over a full one destroys its old callable") {
        small_function a([c = counted{}] { (void)c; });
        small_function big([c = counted{}, pad = std::array<char, 64>{}] { (void)c, (void)pad; });
        REQUIRE(counted::live() == 2);
        a = std::move(big); // a's inline callable goes, big's heap callable moves in
        REQUIRE(counted::live() == 1);
        a = small_function([] {});
        REQUIRE(counted::live() == 0);
    }
    SECTION("reset() destroys now and empties") {
        small_function a([c = counted{}] { (void)c; });
        small_function b([c = counted{}, pad = std::array<char, 64>{}] { (void)c, (void)pad; });
        REQUIRE(counted::live() == 2);
        a.reset();
        REQUIRE_FALSE(static_cast<bool>(a));
        REQUIRE(counted::live() == 1);
        b.reset();
        REQUIRE_FALSE(static_cast<bool>(b));
        REQUIRE(counted::live() == 0);
        b.reset(); // twice is fine
    }
    REQUIRE(counted::live() == 0);
    REQUIRE(counted::double_destroyed() == 0);
}

TEST_CASE("small_function: an exception thrown by the callable reaches the caller", "[small_function]") {
    int calls = 0;
    SECTION("inline") {
        small_function f([&calls] {
            if (++calls == 1) throw std::runtime_error("boom");
        });
        REQUIRE_THROWS_AS(f(), std::runtime_error);
        REQUIRE(static_cast<bool>(f)); // still stored, callable again
        f();
        REQUIRE(calls == 2);
    }
    SECTION("heap") {
        small_function f([&calls, pad = std::array<char, 64>{}] {
            if (++calls + pad[0] == 1) throw std::logic_error("boom");
        });
        REQUIRE_THROWS_AS(f(), std::logic_error);
        f();
        REQUIRE(calls == 2);
    }
}

TEST_CASE("small_function: a callable whose copy throws is not stored", "[small_function]") {
    // Copying an lvalue into the small_function throws; the constructor fails
    // and nothing is leaked (ASan would see a leaked heap copy).
    struct inline_throws { // nothrow move: would live inline
        inline_throws() = default;
        inline_throws(const inline_throws&) { throw std::runtime_error("copy"); }
        inline_throws(inline_throws&&) noexcept = default;
        void operator()() const {}
    };
    struct heap_throws { // copy used as move, may throw: would go to the heap
        heap_throws() = default;
        heap_throws(const heap_throws&) { throw std::runtime_error("copy"); }
        void operator()() const {}
    };
    const inline_throws a;
    const heap_throws b;
    REQUIRE_THROWS_AS(small_function(a), std::runtime_error);
    REQUIRE_THROWS_AS(small_function(b), std::runtime_error);
}

namespace {
int plain_calls = 0;
void plain_function() { ++plain_calls; }
} // namespace

TEST_CASE("small_function: a function named without & is stored as a pointer, as std::function does",
          "[small_function]") {
    small_function f(plain_function);
    REQUIRE(static_cast<bool>(f));
    f();
    f();
    REQUIRE(plain_calls == 2);
}
