// offload/detail/net/address.hpp — socket addresses for streams: a sockaddr
// big enough for IPv4, IPv6 and Unix paths, numeric parsing (which lets a
// numeric host skip the resolver thread), blocking getaddrinfo (run through
// to_thread by the callers), and printing ("127.0.0.1:80", "[::1]:80",
// "unix:/run/x.sock").
#pragma once

#include <offload/stream_errors.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace offload::detail {

/// One socket address of any family we use.
struct socket_address {
    sockaddr_storage storage{};
    socklen_t length = 0;

    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
    sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
    int family() const noexcept { return storage.ss_family; }
};

/// Prints an address: "1.2.3.4:80", "[::1]:80", "unix:/path" ("unix:" alone
/// for an unnamed socket, e.g. a Unix client's own end).
inline std::string format_address(const socket_address& a) {
    char host[INET6_ADDRSTRLEN] = {};
    switch (a.family()) {
    case AF_INET: {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&a.storage);
        ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
    }
    case AF_INET6: {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    case AF_UNIX: {
        const auto* un = reinterpret_cast<const sockaddr_un*>(&a.storage);
        std::size_t off = offsetof(sockaddr_un, sun_path);
        if (a.length <= off) return "unix:";
        std::size_t n = a.length - off;
        if (un->sun_path[0] == '\0') return "unix:@" + std::string(un->sun_path + 1, n - 1); // abstract
        return "unix:" + std::string(un->sun_path, ::strnlen(un->sun_path, n));
    }
    default: return "(address family " + std::to_string(a.family()) + ")";
    }
}

/// The port of an IPv4 / IPv6 address (0 for others).
inline std::uint16_t port_of(const socket_address& a) noexcept {
    if (a.family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
    if (a.family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
    return 0;
}

/// Parses a numeric IPv4 or IPv6 host ("127.0.0.1", "::1", "[::1]"); false when
/// `host` is a name that needs the resolver.
inline bool parse_numeric(std::string host, std::uint16_t port, socket_address& out) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    out = {};
    auto* in = reinterpret_cast<sockaddr_in*>(&out.storage);
    if (::inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        out.length = sizeof(sockaddr_in);
        return true;
    }
    out = {};
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (::inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        out.length = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

/// The address of a Unix socket path. Throws std::invalid_argument for an
/// empty path or one longer than sun_path holds (107 bytes on Linux).
inline socket_address unix_address(const std::string& path) {
    socket_address a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    if (path.empty()) throw std::invalid_argument("offload: a Unix socket path must not be empty");
    if (path.size() >= sizeof un->sun_path)
        throw std::invalid_argument("offload: Unix socket path '" + path + "' is " + std::to_string(path.size()) +
                                    " bytes, more than the " + std::to_string(sizeof un->sun_path - 1) +
                                    " a sockaddr_un holds; use a shorter path (e.g. under /tmp or /run)");
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return a;
}

/// Resolves `host` with getaddrinfo (blocking: call it through to_thread). The
/// addresses come in the resolver's order of preference. `passive`: for bind().
/// Throws connection_error when the name does not resolve.
inline std::vector<socket_address> resolve_blocking(const std::string& host, std::uint16_t port, bool passive) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG | (passive ? AI_PASSIVE : 0);
    addrinfo* res = nullptr;
    std::string service = std::to_string(port);
    int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
    if (rc != 0) {
        std::string why = rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc);
        throw connection_error("offload: cannot resolve host '" + host + "': " + why);
    }
    std::vector<socket_address> out;
    for (addrinfo* p = res; p; p = p->ai_next) {
        if (p->ai_addrlen > sizeof(sockaddr_storage)) continue;
        socket_address a;
        std::memcpy(&a.storage, p->ai_addr, p->ai_addrlen);
        a.length = p->ai_addrlen;
        out.push_back(a);
    }
    ::freeaddrinfo(res);
    if (out.empty()) throw connection_error("offload: host '" + host + "' resolved to no TCP address");
    return out;
}

/// The local (`peer` false) or remote address of a socket; family 0 when unknown.
inline socket_address socket_name(int fd, bool peer) noexcept {
    socket_address a;
    a.length = sizeof a.storage;
    int rc = peer ? ::getpeername(fd, a.get(), &a.length) : ::getsockname(fd, a.get(), &a.length);
    if (rc != 0) a = {};
    return a;
}

} // namespace offload::detail
