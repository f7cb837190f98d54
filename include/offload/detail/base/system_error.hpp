// offload/detail/base/system_error.hpp — turns a failed system call into a
// std::system_error that names the call, the one way the library reports
// errno.
#pragma once

#include <cerrno>
#include <system_error>

namespace offload::detail {

/// Throws std::system_error for the current errno; `what` names the call.
[[noreturn]] inline void throw_errno(const char* what) {
    throw std::system_error(errno, std::generic_category(), what);
}

/// Throws std::system_error for `err`; `what` names the call.
[[noreturn]] inline void throw_errno(int err, const char* what) {
    throw std::system_error(err, std::generic_category(), what);
}

} // namespace offload::detail
