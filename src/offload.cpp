// src/offload.cpp — the one translation unit of the offload_separate library
// (CMake target offload::separate): with OFFLOAD_SEPARATE_COMPILATION the
// headers only declare the library's non-template functions, and this file
// defines them once, so they are not compiled again in every user TU.
// See include/offload/detail/base/config.hpp.
#ifndef OFFLOAD_SEPARATE_COMPILATION
#error "src/offload.cpp is built by the offload_separate target, which defines OFFLOAD_SEPARATE_COMPILATION"
#endif
#ifndef OFFLOAD_BUILDING_SEPARATE
#define OFFLOAD_BUILDING_SEPARATE
#endif

#include <offload/offload.hpp>
