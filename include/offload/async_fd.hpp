// offload/async_fd.hpp — async_fd: an fd owned by one event loop, registered
// with its epoll set once (edge-triggered, like asio's and tokio's reactors)
// instead of once per wait, and deregistered when it is closed. Awaiting
// readiness again costs no epoll_ctl. The base of sockets and streams.
//
// Why an owner: the loop cannot see a raw fd number being closed and reused
// (accept -> fd 7, close, accept -> fd 7 again); a registration kept for the
// old file would silently never fire for the new one. async_fd closes the fd
// itself, after removing it from epoll, so that cannot happen.
#pragma once

#include <offload/detail/base/config.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/fd_table.hpp>
#include <offload/detail/loop/waiter.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <fcntl.h>
#include <source_location>
#include <span>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace offload {

class async_fd;

namespace detail {

class fd_op;

/// The state of one async_fd, on the heap so that an async_fd can move while
/// tasks wait on it: the loop's registration points here, and so do waiters.
class fd_source final : public io_source {
public:
    fd_source(loop_core* l, int f) noexcept : loop(l), fd(f) {}

    void on_events(std::uint32_t ev) override;
    void loop_closing() noexcept override;
    /// Deregisters, wakes the waiters (their await throws), returns the fd.
    int shut(bool closing) noexcept;

    loop_core* loop;
    int fd;
    bool ready[2] = {false, false};  // read, write: set by epoll edges, cleared on EAGAIN
    bool closed[2] = {false, false}; // hang-up or error seen: that direction never blocks again
    bool not_socket = false;         // send() said ENOTSOCK: write() from now on
    bool stream = false;             // a stream socket or a pipe: a short read means drained
    fd_op* waiting[2] = {nullptr, nullptr};
};

/// One task waiting on one direction of an async_fd: for readiness (op wait)
/// or for a read / write that it performs as soon as the fd is ready. It is
/// the source's waiter slot (no allocation). Movable until awaited.
class fd_op : public waiter {
public:
    enum class kind : unsigned char { wait_read, wait_write, read, write };

    fd_op(fd_source* s, kind k, void* b, std::size_t n, std::source_location loc) noexcept
        : waiter(loc), src_(s), buf_(b), len_(n), kind_(k) {}
    fd_op(fd_op&& o) noexcept : waiter(o.where), src_(o.src_), buf_(o.buf_), len_(o.len_), kind_(o.kind_) {}
    fd_op& operator=(const fd_op&) = delete;
    ~fd_op() { unlink(); }

    bool await_ready();
    bool await_suspend(std::coroutine_handle<> h);
    void cancel() noexcept override {
        unlink();
        wake_cancelled();
    }

protected:
    /// Throws what went wrong, or returns the bytes moved.
    std::size_t result() const;

private:
    friend class fd_source;
    /// The fd became ready for this direction (called by the source).
    void on_ready();
    /// The async_fd was closed (`closing`) or let go of (release) while we waited.
    void on_shut(bool closing);
    /// The loop is being destroyed: forget the source, wake nobody.
    void forget() noexcept {
        linked_ = false;
        src_ = nullptr;
        fail_ = failure::loop_gone;
    }

    int dir() const noexcept { return kind_ == kind::write || kind_ == kind::wait_write ? 1 : 0; }
    bool transfers() const noexcept { return kind_ == kind::read || kind_ == kind::write; }
    bool attempt();
    void unlink() noexcept {
        if (linked_) {
            linked_ = false;
            src_->waiting[dir()] = nullptr;
        }
    }

    fd_source* src_;
    void* buf_;
    std::size_t len_;
    kind kind_;
    bool linked_ = false;
    enum class failure : unsigned char { none, closed, released, loop_gone, errno_set } fail_ = failure::none;
    int fd_ = -1;  // for messages
    int err_ = 0;  // errno of a failed read / write
    std::size_t n_ = 0;
};

} // namespace detail

/// A non-blocking fd (socket, pipe, eventfd, tty...) owned by the event loop of
/// the thread that created it, registered with the loop's epoll set once
/// (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) for its whole life, like a socket
/// of asio or tokio's AsyncFd. The loop keeps a readiness bit per direction:
/// an epoll edge sets it, a read or write that meets EAGAIN clears it.
/// Awaiting readiness again costs no epoll_ctl (a raw event_loop::readable(fd)
/// costs two per wait).
///
/// - read_some / write_some do the syscall at once when the bit is set, and
///   otherwise when the next edge comes (a read returns 0 at end of file).
///   A short read of a stream socket or pipe clears the bit too (it drained
///   what there was), which saves the read that would meet EAGAIN.
/// - readable() / writable() only wait for the bit, for your own syscalls:
///   call clear_read_ready() / clear_write_ready() when one meets EAGAIN, or
///   the next await returns at once again (the edge-triggered contract).
///   Readiness may be spurious; always be ready for EAGAIN.
/// - A hang-up or error (EPOLLHUP, EPOLLERR) makes both directions ready for
///   good, a peer's shutdown of its side (EPOLLRDHUP) the read side: the
///   next read returns 0 or throws the socket's error, a write throws EPIPE.
/// - One waiting task per direction: a reader and a writer may wait at once,
///   two readers may not (std::logic_error).
///
/// Ownership: the async_fd closes the fd (removing it from epoll first) in its
/// destructor or close(); release() hands it back without closing. Do not
/// close the number behind its back: a new fd with the same number then
/// cannot be registered (std::logic_error, rather than a silent hang).
///
/// Errors: the constructor throws std::invalid_argument for a blocking fd (the
/// loop would block in read/write; create it with SOCK_NONBLOCK / O_NONBLOCK,
/// or set it with `fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)`
/// first), std::system_error for an fd epoll cannot watch (a regular file:
/// use to_thread) or a closed one, std::logic_error without a running loop or
/// for an fd the loop watches already; the fd then stays the caller's. A read
/// or write that fails throws std::system_error with its errno. Awaiting a
/// closed, released or moved-from async_fd throws std::logic_error.
///
/// Thread safety: loop-local, like every loop object; use it on the thread of
/// the loop that created it. The object may outlive its loop: it then only
/// closes its fd.
/// Cancellation: a cancelled wait leaves its slot and throws cancelled_error;
/// a read or write either happened (its bytes are returned; the cancellation
/// is thrown at the task's next await) or did not happen.
/// Closing while another task waits: that wait throws std::system_error with
/// std::errc::operation_canceled (asio's operation_aborted).
///
/// Example:
///     int sv[2];
///     socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
///     offload::async_fd a(sv[0]), b(sv[1]);
///     co_await a.write_some(std::as_bytes(std::span("ping", 4)));
///     std::byte buf[64];
///     std::size_t n = co_await b.read_some(buf); // 4
class async_fd {
public:
    /// The awaiter of readable() / writable(): resumes once the bit is set.
    struct ready_awaiter : detail::fd_op {
        using fd_op::fd_op;
        /// Nothing; throws std::system_error if the wait failed (the fd was closed meanwhile: operation_canceled).
        void await_resume() const { result(); }
    };
    /// The awaiter of read_some() / write_some(): returns the bytes moved.
    struct transfer_awaiter : detail::fd_op {
        using fd_op::fd_op;
        /// The bytes moved; throws std::system_error if the syscall failed.
        std::size_t await_resume() const { return result(); }
    };

    /// An empty async_fd (is_open() is false).
    async_fd() noexcept = default;
    /// Takes `fd` (non-blocking) and registers it with the running loop of this
    /// thread. Throws as described above; the fd is then not taken.
    explicit async_fd(int fd);
    /// Takes over `o`'s fd and registration; `o` becomes empty.
    async_fd(async_fd&& o) noexcept : src_(std::exchange(o.src_, nullptr)) {}
    /// Closes the fd held so far (waiters of it throw), then takes `o`'s.
    async_fd& operator=(async_fd&& o) noexcept {
        if (this != &o) {
            close();
            src_ = std::exchange(o.src_, nullptr);
        }
        return *this;
    }
    /// Deregisters and closes the fd (see close()).
    ~async_fd() { close(); }

    /// The fd, or -1 when empty.
    int fd() const noexcept { return src_ ? src_->fd : -1; }
    /// True while it holds an fd (not empty, closed or released).
    bool is_open() const noexcept { return src_ != nullptr; }
    /// is_open().
    explicit operator bool() const noexcept { return is_open(); }

    /// Removes the fd from epoll (EPOLL_CTL_DEL), then closes it. A task
    /// waiting on it is woken and throws std::system_error (operation_canceled).
    /// Harmless on an empty async_fd.
    void close() noexcept;
    /// Like close(), but hands the fd back open instead (-1 when empty).
    [[nodiscard]] int release() noexcept;

    /// Awaitable: resumes when the fd may be readable (at once if the bit is
    /// set), also at end of file, hang-up or error.
    [[nodiscard]] ready_awaiter readable(std::source_location loc = std::source_location::current()) {
        return ready_awaiter(src_, detail::fd_op::kind::wait_read, nullptr, 0, loc);
    }
    /// Awaitable: resumes when the fd may be writable (at once if the bit is set).
    [[nodiscard]] ready_awaiter writable(std::source_location loc = std::source_location::current()) {
        return ready_awaiter(src_, detail::fd_op::kind::wait_write, nullptr, 0, loc);
    }
    /// Reads up to `buf.size()` bytes once the fd is readable; returns how many
    /// (0: end of file, or an empty `buf`). Throws std::system_error if read fails.
    [[nodiscard]] transfer_awaiter read_some(std::span<std::byte> buf,
                                             std::source_location loc = std::source_location::current()) {
        return transfer_awaiter(src_, detail::fd_op::kind::read, buf.data(), buf.size(), loc);
    }
    /// Writes up to `buf.size()` bytes once the fd is writable; returns how
    /// many (a socket's send buffer may take fewer). Sockets are written with
    /// MSG_NOSIGNAL: a closed peer throws std::system_error (EPIPE), no SIGPIPE.
    [[nodiscard]] transfer_awaiter write_some(std::span<const std::byte> buf,
                                              std::source_location loc = std::source_location::current()) {
        return transfer_awaiter(src_, detail::fd_op::kind::write, const_cast<std::byte*>(buf.data()), buf.size(), loc);
    }

    /// The readiness bits (true: the next syscall is worth trying).
    bool read_ready() const noexcept { return src_ && src_->ready[0]; }
    /// The write readiness bit (true: the next write is worth trying).
    bool write_ready() const noexcept { return src_ && src_->ready[1]; }
    /// Say that your own syscall met EAGAIN: the next readable() / writable()
    /// waits for a new edge. Kept set after a hang-up or error.
    void clear_read_ready() noexcept {
        if (src_ && !src_->closed[0]) src_->ready[0] = false;
    }
    /// The write side of clear_read_ready().
    void clear_write_ready() noexcept {
        if (src_ && !src_->closed[1]) src_->ready[1] = false;
    }

private:
    detail::fd_source* src_ = nullptr;
};

#if OFFLOAD_DEFINE_BODIES

namespace detail {

OFFLOAD_DECL void fd_source::on_events(std::uint32_t ev) {
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ready[0] = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) ready[1] = true;
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) closed[0] = true;
    if (ev & (EPOLLHUP | EPOLLERR)) closed[1] = true;
    for (int d = 0; d < 2; ++d)
        if (ready[d] && waiting[d]) waiting[d]->on_ready();
}

OFFLOAD_DECL void fd_source::loop_closing() noexcept {
    loop = nullptr;
    for (fd_op*& w : waiting)
        if (w) std::exchange(w, nullptr)->forget();
}

OFFLOAD_DECL int fd_source::shut(bool closing) noexcept {
    if (loop) loop->detach_io(fd);
    for (fd_op*& w : waiting)
        if (fd_op* op = std::exchange(w, nullptr)) {
            try {
                op->on_shut(closing);
            } catch (...) { // the loop could not queue the wake-up (out of memory): nothing left to do
            }
        }
    return fd;
}

OFFLOAD_DECL bool fd_op::await_ready() {
    if (!src_)
        throw std::logic_error("offload: awaiting an async_fd that is empty, closed, released or moved from; "
                               "construct it from an open non-blocking fd first");
    fd_ = src_->fd;
    if (!src_->loop)
        throw std::logic_error(fmt::format("offload: async_fd (fd {}) outlived the event loop that registered it; "
                                           "create async_fds inside the loop that uses them",
                                           fd_));
    if (loop_core::current() != src_->loop)
        throw std::logic_error(fmt::format("offload: async_fd (fd {}) belongs to another event loop (thread); it is "
                                           "loop-local",
                                           fd_));
    if (src_->waiting[dir()])
        throw std::logic_error(fmt::format("offload: a task already waits for fd {} to become {}; one waiting task "
                                           "per direction of an async_fd (serialize the {}s, e.g. with a mutex)",
                                           fd_, dir() ? "writable" : "readable", dir() ? "write" : "read"));
    if (!src_->ready[dir()]) return false;
    return !transfers() || attempt();
}

OFFLOAD_DECL bool fd_op::await_suspend(std::coroutine_handle<> h) {
    if (!arm(h)) return false;
    src_->waiting[dir()] = this;
    linked_ = true;
    return true;
}

// Does the read or write; false (and the bit cleared) when it would block.
OFFLOAD_DECL bool fd_op::attempt() {
    for (;;) {
        ssize_t n;
        if (kind_ == kind::read) {
            n = ::read(src_->fd, buf_, len_);
        } else if (!src_->not_socket) {
            n = ::send(src_->fd, buf_, len_, MSG_NOSIGNAL);
            if (n < 0 && errno == ENOTSOCK) {
                src_->not_socket = true;
                continue;
            }
        } else {
            n = ::write(src_->fd, buf_, len_);
        }
        if (n >= 0) {
            n_ = static_cast<std::size_t>(n);
            // A stream socket or pipe read short only because it took all
            // there was: the next read would meet EAGAIN, so skip it (as
            // tokio does); data arriving after this read is a new edge. Not
            // for datagrams: a short read there is one datagram of several.
            if (kind_ == kind::read && src_->stream && n_ > 0 && n_ < len_ && !src_->closed[0]) src_->ready[0] = false;
            return true;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            src_->ready[dir()] = false;
            return false;
        }
        err_ = errno;
        fail_ = failure::errno_set;
        return true;
    }
}

OFFLOAD_DECL void fd_op::on_ready() {
    if (transfers() && !attempt()) return; // spurious: wait for the next edge
    unlink();
    wake();
}

OFFLOAD_DECL void fd_op::on_shut(bool closing) {
    linked_ = false;
    fail_ = closing ? failure::closed : failure::released;
    wake();
}

OFFLOAD_DECL std::size_t fd_op::result() const {
    throw_if_cancelled();
    switch (fail_) {
    case failure::none: return n_;
    case failure::closed:
        throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                                fmt::format("offload: async_fd (fd {}) was closed while a task waited on it", fd_));
    case failure::released:
        throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                                fmt::format("offload: async_fd (fd {}) was released while a task waited on it", fd_));
    case failure::loop_gone: throw std::logic_error("offload: the event loop of this async_fd is gone");
    case failure::errno_set: break;
    }
    throw std::system_error(err_, std::generic_category(),
                            fmt::format("offload: {} fd {}", kind_ == kind::read ? "read from" : "write to", fd_));
}

} // namespace detail

OFFLOAD_DECL async_fd::async_fd(int fd) {
    detail::loop_core& loop = detail::loop_core::require_current("offload::async_fd");
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0)
        throw std::system_error(errno, std::generic_category(),
                                fmt::format("offload: async_fd: fd {} is not an open file descriptor", fd));
    if (!(fl & O_NONBLOCK))
        throw std::invalid_argument(fmt::format(
            "offload: async_fd: fd {} is in blocking mode, and a read or write would block the event loop; open it "
            "with SOCK_NONBLOCK / O_NONBLOCK, or set it with fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) first",
            fd));
    auto* s = new detail::fd_source(&loop, fd);
    struct stat st {};
    if (::fstat(fd, &st) == 0) {
        int type = 0;
        socklen_t len = sizeof type;
        s->stream = S_ISFIFO(st.st_mode) ||
                    (S_ISSOCK(st.st_mode) && ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
                     type == SOCK_STREAM);
    }
    try {
        loop.attach_io(fd, s);
    } catch (...) {
        delete s;
        throw;
    }
    src_ = s;
}

OFFLOAD_DECL void async_fd::close() noexcept {
    if (!src_) return;
    detail::fd_source* s = std::exchange(src_, nullptr);
    int fd = s->shut(true);
    delete s;
    ::close(fd);
}

OFFLOAD_DECL int async_fd::release() noexcept {
    if (!src_) return -1;
    detail::fd_source* s = std::exchange(src_, nullptr);
    int fd = s->shut(false);
    delete s;
    return fd;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload
