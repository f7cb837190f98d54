// offload/detail/base/read_file.hpp — reads a small file (/proc, /sys) whole
// with plain system calls: no iostreams, which cost every includer compile
// time and a static initializer.
#pragma once

#include <offload/detail/base/config.hpp>

#include <cerrno>
#include <cstddef>
#include <fcntl.h>
#include <optional>
#include <string>
#include <unistd.h>

namespace offload::detail {

/// The whole content of a small file, or nullopt if it cannot be read.
OFFLOAD_DECL std::optional<std::string> read_small_file(const std::string& path);

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL std::optional<std::string> read_small_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ::close(fd);
            return std::nullopt;
        }
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
