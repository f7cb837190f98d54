// offload/stream_options.hpp — the settings of a stream (buffer limits and
// write-buffer water marks) and of a server (listen backlog, accept back-off),
// aggregates used with designated initializers:
// `open_connection("localhost", 8080, {.limit = 1 << 20})`.
#pragma once

#include <chrono>
#include <cstddef>

namespace offload {

/// Settings of one stream.
struct stream_options {
    /// The most bytes read_until() / readline() buffer while looking for the
    /// delimiter (asyncio's `limit`, default 64 KiB); more is limit_overrun_error.
    std::size_t limit = 64 * 1024;
    /// drain() suspends while more than this many bytes wait in the write buffer...
    std::size_t high_water = 64 * 1024;
    /// ...and resumes once at most this many do (asyncio: high / 4).
    std::size_t low_water = 16 * 1024;
};

/// Settings of a server (start_server / start_unix_server) and of each stream it accepts.
struct server_options {
    /// stream_options::limit of each accepted stream.
    std::size_t limit = 64 * 1024;
    /// stream_options::high_water of each accepted stream.
    std::size_t high_water = 64 * 1024;
    /// stream_options::low_water of each accepted stream.
    std::size_t low_water = 16 * 1024;
    /// listen() backlog.
    int backlog = 511;
    /// SO_REUSEPORT (several servers share one port); SO_REUSEADDR is always set on TCP.
    bool reuse_port = false;
    /// When accept() fails for want of fds or memory (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM), the accept loop sleeps this long, doubling up to accept_backoff_max,
    /// instead of spinning on a listener that stays readable.
    std::chrono::milliseconds accept_backoff_min{10};
    /// The longest sleep of that backoff.
    std::chrono::milliseconds accept_backoff_max{1000};

    /// The options of an accepted stream.
    stream_options stream() const noexcept { return {limit, high_water, low_water}; }
};

} // namespace offload
