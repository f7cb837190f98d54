// tests/support/alloc_count.hpp — counts the heap allocations made on the
// calling thread, so a test can show what an operation costs in heap blocks.
// The count comes from a replacement of the global operator new in
// alloc_count.cpp, which tests/CMakeLists.txt compiles into the tests that
// include this header (a replaced operator new cannot live in a header).
//
// Not under AddressSanitizer (whose own operator new some allocations would
// still reach: it then reports a new/free mismatch) nor ThreadSanitizer (which
// defines the same operators): there OFFLOAD_TEST_COUNTS_ALLOCATIONS is 0, the
// count stays 0 and the tests do not check it.
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define OFFLOAD_TEST_COUNTS_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define OFFLOAD_TEST_COUNTS_ALLOCATIONS 0
#endif
#endif
#ifndef OFFLOAD_TEST_COUNTS_ALLOCATIONS
#define OFFLOAD_TEST_COUNTS_ALLOCATIONS 1
#endif

namespace offload::test {

/// Allocations made by this thread through the global operator new so far.
long allocations_here() noexcept;

} // namespace offload::test
