// offload/detail/net/socket.hpp — the raw syscalls of streams and servers:
// non-blocking sockets (SOCK_NONBLOCK | SOCK_CLOEXEC), a listener, the start
// of a non-blocking connect, and the errno -> message / error type mapping,
// so that every error says what failed and where.
#pragma once

#include <offload/detail/net/address.hpp>
#include <offload/stream_errors.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

namespace offload::detail {

/// "connection refused", "network is unreachable"...: strerror, lower-cased first letter.
inline std::string errno_phrase(int err) {
    std::string s = std::strerror(err);
    if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z' && !(s.size() > 1 && s[1] >= 'A' && s[1] <= 'Z'))
        s[0] = static_cast<char>(s[0] - 'A' + 'a');
    return s;
}

/// True for the errnos that mean the peer is gone (reset or broken pipe).
inline bool is_reset(int err) noexcept {
    return err == ECONNRESET || err == EPIPE || err == ECONNABORTED || err == ETIMEDOUT || err == EHOSTUNREACH;
}

/// The exception of a failed read / write on a connection to `peer`.
[[noreturn]] inline void throw_io_error(int err, const char* op, const std::string& peer) {
    std::error_code code(err, std::generic_category());
    if (is_reset(err))
        throw connection_reset_error("offload: connection to " + peer + " " +
                                         (err == EPIPE ? std::string("closed by the peer (broken pipe)")
                                                       : "reset (" + errno_phrase(err) + ")") +
                                         " during " + op,
                                     code);
    throw stream_error(
        "offload: " + std::string(op) + " on the connection to " + peer + " failed: " + errno_phrase(err), code);
}

/// A new non-blocking, close-on-exec stream socket of `family`. Throws std::system_error.
inline int open_stream_socket(int family, const char* what) {
    int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), std::string("offload: ") + what + ": socket()");
    if (family == AF_INET || family == AF_INET6) {
        int one = 1; // small writes of a request / response go out at once
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

/// Starts connecting `fd` to `to`: 0 when connected at once (Unix sockets
/// often are), EINPROGRESS when the connect completes later (writability, then
/// SO_ERROR), another errno on failure.
inline int start_connect(int fd, const socket_address& to) noexcept {
    for (;;) {
        if (::connect(fd, to.get(), to.length) == 0) return 0;
        if (errno == EINTR) continue;
        return errno == EAGAIN && to.family() == AF_UNIX ? EAGAIN : errno;
    }
}

/// The error of a completed non-blocking connect (SO_ERROR), 0 on success.
inline int connect_result(int fd) noexcept {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
    return err;
}

/// The exception of a connect to `where` that failed with `err`.
inline connection_error connect_error(int err, const std::string& where) {
    return connection_error("offload: " + errno_phrase(err) + " to " + where,
                            std::error_code(err, std::generic_category()));
}

/// A listening socket bound to `at`. Throws std::system_error naming the address.
inline int open_listener(const socket_address& at, int backlog, bool reuse_port) {
    int fd = open_stream_socket(at.family(), "start_server");
    int one = 1;
    if (at.family() != AF_UNIX) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        int err = errno;
        ::close(fd);
        throw std::system_error(err, std::generic_category(), "offload: start_server: SO_REUSEPORT");
    }
    if (::bind(fd, at.get(), at.length) != 0 || ::listen(fd, backlog) != 0) {
        int err = errno;
        ::close(fd);
        throw std::system_error(err, std::generic_category(),
                                "offload: start_server: cannot listen on " + format_address(at) +
                                    (err == EADDRINUSE
                                         ? " (the address is in use: choose another port, port 0 for any, "
                                           "or remove a stale Unix socket file)"
                                         : ""));
    }
    return fd;
}

} // namespace offload::detail
