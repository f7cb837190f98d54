// offload/detail/process/fd_passing.hpp — sending file descriptors over a unix socket
// (SCM_RIGHTS): how shared-memory handles reach a worker, and how the
// forkserver receives the descriptors of the worker it is to start.
#pragma once

#include <offload/detail/base/config.hpp>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/uio.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace offload::detail {

inline constexpr std::size_t max_passed_fds = 250; // SCM_MAX_FD is 253

/// Sends `len` bytes of `data` (at least one) with `fds` attached. Blocking.
OFFLOAD_DECL void send_with_fds(int sock, const void* data, std::size_t len, const int* fds, std::size_t nfds);

/// Receives one message into `buf` and up to `max_fds` descriptors (appended
/// to `fds`, close-on-exec). Returns the byte count (0 at EOF). Blocking.
OFFLOAD_DECL std::size_t recv_with_fds(int sock, void* buf, std::size_t cap, std::vector<int>& fds,
                                       std::size_t max_fds);

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void send_with_fds(int sock, const void* data, std::size_t len, const int* fds, std::size_t nfds) {
    if (nfds > max_passed_fds) throw std::invalid_argument("offload: too many descriptors in one message (max 250)");
    iovec iov{const_cast<void*>(data), len};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * (nfds ? nfds : 1)));
    if (nfds) {
        msg.msg_control = ctrl.data();
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    for (;;) {
        ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n >= 0) return;
        if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "offload: sendmsg");
    }
}

OFFLOAD_DECL std::size_t recv_with_fds(int sock, void* buf, std::size_t cap, std::vector<int>& fds,
                                       std::size_t max_fds) {
    iovec iov{buf, cap};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> ctrl(CMSG_SPACE(sizeof(int) * (max_fds ? max_fds : 1)));
    msg.msg_control = ctrl.data();
    msg.msg_controllen = ctrl.size();
    ssize_t n;
    do {
        n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw std::system_error(errno, std::generic_category(), "offload: recvmsg");
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char* p = CMSG_DATA(c);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, p + i * sizeof(int), sizeof(int));
            fds.push_back(fd);
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        for (int fd : fds) ::close(fd);
        fds.clear();
        throw std::runtime_error("offload: descriptors were truncated in transit (too many for one message)");
    }
    return static_cast<std::size_t>(n);
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
