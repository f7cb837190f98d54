// offload/detail/base/config.hpp — header-only by default, or compiled once.
//
// offload is header-only: every non-template function is `inline` and is
// compiled again in each translation unit that uses it. A program with many
// TUs can instead define OFFLOAD_SEPARATE_COMPILATION (link the CMake target
// offload::separate, which defines it): the headers then only declare those
// functions, and src/offload.cpp (the offload_separate library) defines them
// once, as asio's ASIO_SEPARATE_COMPILATION does. Templates stay in headers.
//
// OFFLOAD_DECL            marks such a function: `inline` header-only, nothing
//                         when compiled separately (one strong definition).
// OFFLOAD_DEFINE_BODIES   1 where their bodies are compiled: every TU when
//                         header-only, only the library's TU otherwise.
#pragma once

#if defined(OFFLOAD_SEPARATE_COMPILATION)
#define OFFLOAD_DECL
#if defined(OFFLOAD_BUILDING_SEPARATE)
#define OFFLOAD_DEFINE_BODIES 1
#else
#define OFFLOAD_DEFINE_BODIES 0
#endif
#else
#define OFFLOAD_DECL inline
#define OFFLOAD_DEFINE_BODIES 1
#endif
