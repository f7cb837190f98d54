// tests/support/alloc_count.cpp — the replacement of the global operator new
// behind alloc_count.hpp (see there).
#include "alloc_count.hpp"

#include <cstdlib>
#include <new>

namespace {
thread_local long allocations_made = 0;
} // namespace

long offload::test::allocations_here() noexcept { return allocations_made; }

#if OFFLOAD_TEST_COUNTS_ALLOCATIONS
// (GCC cannot see that these replace the global pair, and warns at every inlined delete.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
    ++allocations_made;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
#endif
