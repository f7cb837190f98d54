// tests/support/fd_count.hpp — how many file descriptors this process has open
// (the entries of /proc/self/fd), to check that an object closes what it opened:
// compare the count before its lifetime with the count after.
#pragma once

#include <dirent.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>

namespace offload::test {

/// Number of open fds of this process, not counting the one used to list them.
inline std::size_t fd_count() {
    DIR* d = ::opendir("/proc/self/fd");
    if (!d) throw std::runtime_error("fd_count: cannot open /proc/self/fd");
    std::size_t n = 0;
    while (dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++n;
    ::closedir(d);
    return n - 1; // the directory's own fd
}

} // namespace offload::test
