// offload/stream.hpp — asyncio streams on offload's loop: open_connection /
// open_unix_connection give a `stream` (buffered reads with limits, buffered
// writes with drain() backpressure), start_server / start_unix_server run one
// task per accepted connection and own those tasks. Every socket is one
// async_fd: one edge-triggered epoll registration for its whole life, so
// awaiting readability again costs no epoll_ctl.
#pragma once

#include <offload/async_fd.hpp>
#include <offload/detail/net/address.hpp>
#include <offload/detail/net/byte_buffer.hpp>
#include <offload/detail/net/socket.hpp>
#include <offload/errors.hpp>
#include <offload/event.hpp>
#include <offload/sleep.hpp>
#include <offload/stream_errors.hpp>
#include <offload/stream_options.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>
#include <offload/to_thread.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace offload {

class stream;

namespace detail {

/// The state of one stream, shared with its flusher task (which may outlive
/// the stream object while it sends what close() left in the write buffer).
struct stream_state : std::enable_shared_from_this<stream_state> {
    async_fd fd;
    stream_options opts;
    std::string peer, local;
    byte_buffer rbuf, wbuf;
    bool eof = false;          // the peer's end of file was read
    bool maybe_unread = false; // wait_peer_closed stopped reading with data left in the socket
    bool eof_pending = false;  // write_eof() waits for the write buffer to empty
    bool closing = false;      // close() waits for the write buffer to empty
    bool flushing = false;     // a flusher task runs
    int write_errno = 0;       // a send failed: the peer is gone
    unsigned reads_in_a_row = 0;
    event below_low_water;     // set by the flusher when wbuf <= low_water or on error

    /// Reads once into rbuf: more bytes, or eof. Yields every 32 reads that
    /// did not wait, so a peer that always has data cannot starve the loop.
    task<> fill(std::size_t want);
    /// Sends what it can of wbuf without waiting; false when the socket is full.
    bool send_some();
    void finish_write_side() noexcept;
    void start_flusher();
    void shut_now() noexcept {
        fd.close();
        wbuf.clear();
        below_low_water.set();
    }
};

inline task<> flush_loop(std::shared_ptr<stream_state> st);

inline task<> stream_state::fill(std::size_t want) {
    constexpr std::size_t chunk = 64 * 1024;
    std::size_t n = std::max(want, chunk);
    for (;;) {
        if (!fd.is_open())
            throw std::logic_error("offload: reading from a stream that is closed (" + peer +
                                   "); do not read after close()");
        if (fd.read_ready() || maybe_unread) {
            if (++reads_in_a_row >= 32) { // fairness: let the other ready tasks run
                reads_in_a_row = 0;
                co_await sleep(std::chrono::nanoseconds(0));
            }
            char* p = rbuf.prepare(n);
            ssize_t got = ::recv(fd.fd(), p, n, 0);
            int err = errno;
            rbuf.commit(got > 0 ? static_cast<std::size_t>(got) : 0);
            if (got > 0) {
                if (static_cast<std::size_t>(got) < n) {
                    fd.clear_read_ready(); // took all there was (kept set after a hang-up)
                    maybe_unread = false;
                }
                co_return;
            }
            if (got == 0) {
                eof = true;
                co_return;
            }
            if (err == EINTR) continue;
            if (err != EAGAIN && err != EWOULDBLOCK) throw_io_error(err, "read", peer);
            maybe_unread = false;
            fd.clear_read_ready();
        }
        reads_in_a_row = 0;
        co_await fd.readable();
    }
}

inline bool stream_state::send_some() {
    while (!wbuf.empty() && fd.is_open()) {
        ssize_t n = ::send(fd.fd(), wbuf.data(), wbuf.size(), MSG_NOSIGNAL);
        if (n >= 0) {
            wbuf.drop(static_cast<std::size_t>(n));
            continue;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            fd.clear_write_ready();
            return false;
        }
        write_errno = errno; // the peer is gone: drop the rest, drain() reports it
        wbuf.clear();
    }
    return true;
}

// The write buffer is empty (or the peer gone): do what waited for that.
inline void stream_state::finish_write_side() noexcept {
    below_low_water.set();
    if (closing) {
        fd.close();
        return;
    }
    if (eof_pending && fd.is_open()) {
        eof_pending = false;
        ::shutdown(fd.fd(), SHUT_WR);
    }
}

inline task<> flush_loop(std::shared_ptr<stream_state> st) {
    try {
        for (;;) {
            co_await st->fd.writable();
            bool done = st->send_some();
            if (st->wbuf.size() <= st->opts.low_water) st->below_low_water.set();
            if (done) break;
        }
    } catch (...) { // closed under us, cancelled at loop shutdown: nothing more to send
        st->wbuf.clear();
        if (st->write_errno == 0) st->write_errno = ECONNABORTED;
    }
    st->flushing = false;
    st->finish_write_side();
}

inline void stream_state::start_flusher() {
    if (flushing) return;
    flushing = true;
    below_low_water.clear();
    (void)create_task(flush_loop, shared_from_this());
}

} // namespace detail

/// A connected byte stream (TCP or Unix socket): asyncio's StreamReader and
/// StreamWriter in one object. Move-only; destroying it is close().
///
/// Reads are buffered (one recv of up to 64 KiB at a time). Writes go to the
/// socket at once when nothing is buffered, and otherwise to a write buffer
/// that a background flusher sends as the socket drains; drain() is the
/// backpressure point. One reader and one writer may work at once (e.g. two
/// tasks), not two readers.
///
/// Errors: connection_reset_error when the peer reset the connection or is
/// gone (no SIGPIPE: every send uses MSG_NOSIGNAL), incomplete_read_error,
/// limit_overrun_error; std::logic_error when used after close().
/// Cancellation: a cancelled read or drain throws cancelled_error and leaves
/// the stream usable: bytes already received stay in its buffer.
/// Thread safety: loop-local, like every loop object.
/// Example:
///     stream s = co_await open_connection("127.0.0.1", 8080);
///     s.write("GET / HTTP/1.0\r\n\r\n");
///     co_await s.drain();
///     std::string status = co_await s.readline();
class stream {
public:
    /// An empty stream (is_open() is false).
    stream() = default;
    /// Takes a connected non-blocking socket `fd` and registers it with the
    /// running loop (see async_fd for what it throws); when it throws, `fd`
    /// has been closed (so that an accept or connect path leaks nothing).
    explicit stream(int fd, stream_options opts = {}) {
        try {
            if (opts.low_water > opts.high_water)
                throw std::invalid_argument("offload: stream_options: low_water must not exceed high_water");
            st_ = std::make_shared<detail::stream_state>();
            st_->fd = async_fd(fd);
        } catch (...) {
            st_.reset();
            ::close(fd);
            throw;
        }
        st_->opts = opts;
        st_->peer = detail::format_address(detail::socket_name(fd, true));
        st_->local = detail::format_address(detail::socket_name(fd, false));
        st_->below_low_water.set();
    }
    /// Takes over another stream's connection; the moved-from stream is empty.
    stream(stream&&) noexcept = default;
    /// Closes this stream (as close() does), then takes over `o`'s connection.
    stream& operator=(stream&& o) noexcept {
        if (this != &o) {
            close();
            st_ = std::move(o.st_);
        }
        return *this;
    }
    ~stream() { close(); }

    /// True from construction until close() or abort() (false when empty).
    bool is_open() const noexcept { return st_ && st_->fd.is_open() && !st_->closing; }

    /// Up to `n` bytes: what is buffered, or else what one read brings; empty at end of file (or for n == 0).
    task<std::string> read(std::size_t n) {
        auto& st = state("read");
        if (st.rbuf.empty() && !st.eof && n > 0) co_await st.fill(n);
        co_return st.rbuf.take(n);
    }
    /// Exactly `n` bytes. Throws incomplete_read_error (with the bytes that
    /// came, taken from the stream) when end of file comes first.
    task<std::string> read_exactly(std::size_t n) {
        auto& st = state("read_exactly");
        while (st.rbuf.size() < n) {
            if (st.eof) {
                std::size_t got = st.rbuf.size();
                throw incomplete_read_error("offload: " + st.peer + " closed the connection after " +
                                                std::to_string(got) + " of the " + std::to_string(n) +
                                                " bytes read_exactly() wanted",
                                            st.rbuf.take(got), n);
            }
            co_await st.fill(n - st.rbuf.size());
        }
        co_return st.rbuf.take(n);
    }
    /// The bytes up to and including `delimiter`. At most options().limit bytes
    /// are buffered looking for it: past that, limit_overrun_error, and the
    /// bytes stay in the buffer (read(e.consumed()) skips them; or close).
    /// End of file first: incomplete_read_error with the bytes that came.
    task<std::string> read_until(std::string delimiter = "\n") {
        auto& st = state("read_until");
        if (delimiter.empty()) throw std::invalid_argument("offload: read_until: the delimiter must not be empty");
        std::size_t from = 0;
        for (;;) {
            std::size_t at = st.rbuf.view().find(delimiter, from);
            if (at != std::string_view::npos) {
                if (at + delimiter.size() > st.opts.limit)
                    throw limit_overrun_error("offload: the delimiter from " + st.peer + " came after " +
                                                  std::to_string(at) + " bytes, past the stream's limit of " +
                                                  std::to_string(st.opts.limit) +
                                                  " (stream_options::limit); the bytes stay in the buffer",
                                              at);
                co_return st.rbuf.take(at + delimiter.size());
            }
            if (st.rbuf.size() > st.opts.limit)
                throw limit_overrun_error("offload: " + std::to_string(st.rbuf.size()) + " bytes from " + st.peer +
                                              " hold no delimiter, more than the stream's limit of " +
                                              std::to_string(st.opts.limit) +
                                              " (stream_options::limit); the bytes stay in the buffer",
                                          st.rbuf.size());
            if (st.eof) {
                std::size_t got = st.rbuf.size();
                throw incomplete_read_error("offload: " + st.peer + " closed the connection after " +
                                                std::to_string(got) +
                                                " bytes without the delimiter read_until() wanted",
                                            st.rbuf.take(got), 0);
            }
            from = st.rbuf.size() >= delimiter.size() ? st.rbuf.size() - delimiter.size() + 1 : 0;
            co_await st.fill(0);
        }
    }
    /// read_until("\n").
    task<std::string> readline() { return read_until("\n"); }

    /// Queues `bytes`: sent at once if nothing waits before them, else by the
    /// flusher as the socket drains. Never blocks; call drain() to bound the
    /// buffer. After the peer is gone the bytes are dropped and drain() throws.
    void write(std::string_view bytes) {
        auto& st = state("write");
        if (st.eof_pending || st.closing)
            throw std::logic_error("offload: write after write_eof() or close() on a stream");
        if (st.write_errno != 0 || bytes.empty()) return;
        st.wbuf.append(bytes);
        if (st.flushing) return;
        if (!st.send_some()) st.start_flusher();
    }
    /// write() for raw bytes.
    void write(std::span<const std::byte> bytes) {
        write(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    }
    /// Waits while more than high_water bytes are buffered, until at most
    /// low_water are. Throws connection_reset_error when the peer is gone.
    task<> drain() {
        auto& st = state("drain");
        auto keep = st_; // the flusher may close the fd while we wait
        if (st.wbuf.size() > st.opts.high_water) {
            st.below_low_water.clear();
            while (st.write_errno == 0 && st.wbuf.size() > st.opts.low_water && st.flushing)
                co_await st.below_low_water.wait();
        }
        if (st.write_errno != 0) detail::throw_io_error(st.write_errno, "write", st.peer);
    }
    /// Half-close: sends end of file once the write buffer is empty; reading goes on.
    void write_eof() {
        auto& st = state("write_eof");
        st.eof_pending = true;
        if (!st.flushing) st.finish_write_side();
    }
    /// Closes the stream: at once when nothing is buffered, else after the
    /// flusher sent the buffer (or met an error). Harmless when closed.
    void close() noexcept {
        if (!st_ || st_->closing) return;
        st_->closing = true;
        if (!st_->flushing) st_->fd.close();
    }
    /// Closes at once, dropping buffered writes.
    void abort() noexcept {
        if (!st_) return;
        st_->closing = true;
        st_->shut_now();
    }
    /// True once end of file was read and the read buffer is empty.
    bool at_eof() const noexcept { return st_ && st_->eof && st_->rbuf.empty(); }
    /// Bytes received and not read yet / written and not sent yet.
    std::size_t read_buffer_size() const noexcept { return st_ ? st_->rbuf.size() : 0; }
    /// Bytes written and not sent yet (what drain() waits on).
    std::size_t write_buffer_size() const noexcept { return st_ ? st_->wbuf.size() : 0; }
    /// "127.0.0.1:5000", "[::1]:5000", "unix:/path" ("unix:" for an unnamed end).
    const std::string& peer_address() const { return state("peer_address").peer; }
    /// This end's address, in the form of peer_address().
    const std::string& local_address() const { return state("local_address").local; }
    /// The options the stream was made with (limit, water marks).
    const stream_options& options() const { return state("options").opts; }
    /// The socket (-1 when closed), for setsockopt and the like.
    int native_handle() const noexcept { return st_ && st_->fd.is_open() ? st_->fd.fd() : -1; }

    /// Completes when the peer closed its side, reset, or errored, without
    /// taking any data from the stream: bytes that arrive meanwhile are kept
    /// in the read buffer (up to the limit; past it they are left in the
    /// socket). For a task busy elsewhere (an offloaded call) that must learn
    /// its client went away. Do not read from the stream at the same time.
    task<> wait_peer_closed() {
        auto& st = state("wait_peer_closed");
        for (;;) {
            if (st.eof || !st.fd.is_open()) co_return;
            pollfd p{st.fd.fd(), POLLRDHUP, 0};
            if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) co_return;
            if (st.rbuf.size() < st.opts.limit) {
                try {
                    co_await st.fill(0);
                } catch (const stream_error&) {
                    co_return; // reset: gone
                }
            } else {
                st.maybe_unread = true; // data may be left in the socket: the next read tries
                st.fd.clear_read_ready();
                co_await st.fd.readable();
            }
        }
    }

private:
    detail::stream_state& state(const char* what) const {
        if (!st_ || (!st_->fd.is_open() && !st_->flushing))
            throw std::logic_error(std::string("offload: stream::") + what +
                                   " on a closed, moved-from or empty stream");
        return *st_;
    }
    std::shared_ptr<detail::stream_state> st_;
};

namespace detail {

// Connects to each address in turn; the last error if none accepts.
inline task<stream> connect_any(std::vector<socket_address> to, stream_options opts) {
    std::string errors;
    int last = 0;
    for (const socket_address& a : to) {
        int fd = open_stream_socket(a.family(), "open_connection");
        async_fd afd;
        try {
            afd = async_fd(fd);
        } catch (...) {
            ::close(fd);
            throw;
        }
        int err = start_connect(fd, a);
        if (err == EINPROGRESS) {
            co_await afd.writable(); // cancellation: afd closes the socket
            err = connect_result(fd);
        }
        if (err == 0) co_return stream(afd.release(), opts);
        last = err;
        if (!errors.empty()) errors += "; ";
        errors += errno_phrase(err) + " to " + format_address(a);
    }
    throw connection_error("offload: " + errors, std::error_code(last, std::generic_category()));
}

} // namespace detail

/// Connects to `host`:`port` (TCP). A numeric host (IPv4, IPv6, "[::1]") is
/// used as is; a name is resolved with getaddrinfo on the default thread pool
/// (to_thread), never on the loop, and each address is tried in turn.
/// Throws connection_error ("offload: connection refused to 127.0.0.1:1").
/// Cancellation: the socket being connected is closed.
inline task<stream> open_connection(std::string host, std::uint16_t port, stream_options opts = {}) {
    detail::socket_address a;
    std::vector<detail::socket_address> addrs;
    if (detail::parse_numeric(host, port, a))
        addrs.push_back(a);
    else
        addrs = co_await to_thread(detail::resolve_blocking, host, port, false);
    co_return co_await detail::connect_any(std::move(addrs), opts);
}

/// Connects to the Unix socket at `path`. Throws connection_error.
inline task<stream> open_unix_connection(std::string path, stream_options opts = {}) {
    std::vector<detail::socket_address> addrs;
    addrs.push_back(detail::unix_address(path));
    co_return co_await detail::connect_any(std::move(addrs), opts);
}

namespace detail {

/// The state of a server, shared with its accept loop and connection tasks.
struct server_state {
    std::function<task<>(stream)> handler;
    server_options opts;
    async_fd listener;
    std::string unix_path; // removed on close
    std::uint16_t port = 0;
    bool closed = false;
    task_ref acceptor;
    std::unordered_map<std::uint64_t, task_ref> connections;
    std::uint64_t next_id = 0;
    event all_done; // closed and no connection left

    void close() noexcept {
        if (closed) return;
        closed = true;
        acceptor.cancel();
        listener.close();
        if (!unix_path.empty()) ::unlink(unix_path.c_str());
        check_done();
    }
    void check_done() noexcept {
        if (closed && connections.empty()) all_done.set();
    }
};

/// What a connection task gives back however it ends, even when it is
/// cancelled before its first step (close_clients() right after an accept):
/// its body then never runs, but its frame, and this parameter with it, is
/// destroyed. Without it, such a connection's fd leaked and its entry stayed
/// in `connections`, so wait_closed() never returned.
struct connection_slot {
    std::shared_ptr<server_state> srv;
    std::uint64_t id = 0;
    int fd = -1;

    connection_slot(std::shared_ptr<server_state> s, std::uint64_t i, int f) noexcept
        : srv(std::move(s)), id(i), fd(f) {}
    connection_slot(connection_slot&& o) noexcept : srv(std::move(o.srv)), id(o.id), fd(std::exchange(o.fd, -1)) {}
    connection_slot& operator=(connection_slot&&) = delete;
    ~connection_slot() { release(); }

    /// Closes the fd if no stream took it, and removes the connection from its server.
    void release() noexcept {
        if (fd >= 0) ::close(std::exchange(fd, -1));
        if (auto st = std::move(srv)) {
            st->connections.erase(id);
            st->check_done();
        }
    }
};

inline task<> run_connection(connection_slot slot) {
    std::exception_ptr failed;
    try {
        stream s(std::exchange(slot.fd, -1), slot.srv->opts.stream());
        co_await slot.srv->handler(std::move(s));
    } catch (const cancelled_error&) { // close_clients(): the expected way out
    } catch (...) {
        failed = std::current_exception();
    }
    if (failed)
        if (loop_core* l = loop_core::current())
            l->call_exception_handler({"exception in a stream server's connection handler", failed, {}});
    slot.release();
}

inline task<> accept_loop(std::shared_ptr<server_state> srv) {
    auto backoff = srv->opts.accept_backoff_min;
    unsigned accepted_in_a_row = 0;
    while (!srv->closed) {
        int fd = ::accept4(srv->listener.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            backoff = srv->opts.accept_backoff_min;
            std::uint64_t id = srv->next_id++;
            // The slot owns the fd from here on, and removes the entry when the task ends.
            srv->connections.emplace(id, create_task(run_connection(connection_slot(srv, id, fd))));
            if (++accepted_in_a_row >= 32) { // a flood of connections must not starve the loop
                accepted_in_a_row = 0;
                co_await sleep(std::chrono::nanoseconds(0));
            }
            continue;
        }
        int err = errno;
        accepted_in_a_row = 0;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            srv->listener.clear_read_ready();
            co_await srv->listener.readable();
        } else if (err == EINTR || err == ECONNABORTED || err == EPROTO) {
            continue; // the connection died before we took it
        } else if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            // The listener stays readable: retrying at once would spin. Back off.
            co_await sleep(backoff);
            backoff = std::min(backoff * 2, srv->opts.accept_backoff_max);
        } else {
            throw std::system_error(err, std::generic_category(), "offload: stream server: accept() failed");
        }
    }
}

inline void start_accepting(const std::shared_ptr<server_state>& srv) { srv->acceptor = create_task(accept_loop, srv); }

} // namespace detail

/// A listening server made by start_server / start_unix_server (asyncio's
/// Server). It owns the task of each connection. Move-only; destroying it
/// closes it and cancels its connections (without waiting for them).
///
/// Cancellation: cancelling serve_forever() closes the server, cancels its
/// connections and waits for them; wait_closed() may be cancelled freely.
/// Thread safety: loop-local.
class server {
public:
    /// Wraps a listening state; start_server and start_unix_server make servers this way.
    explicit server(std::shared_ptr<detail::server_state> st) noexcept : st_(std::move(st)) {}
    /// Takes over another server's listener and connections; the moved-from one is empty.
    server(server&&) noexcept = default;
    /// Shuts this server down (as the destructor does), then takes over `o`'s.
    server& operator=(server&& o) noexcept {
        if (this != &o) {
            shut();
            st_ = std::move(o.st_);
        }
        return *this;
    }
    ~server() { shut(); }

    /// The TCP port it listens on (the one chosen when asked for port 0); 0 for Unix sockets.
    std::uint16_t port() const noexcept { return st_ ? st_->port : 0; }
    /// Stops accepting: closes the listener (and removes a Unix socket's path).
    /// Connections already accepted go on.
    void close() noexcept {
        if (st_) st_->close();
    }
    /// Cancels every connection task.
    void close_clients() noexcept {
        if (!st_) return;
        std::vector<task_ref> all;
        for (auto& [id, t] : st_->connections) all.push_back(t);
        for (auto& t : all) t.cancel("offload: the stream server closed its clients");
    }
    /// Accepting (not closed).
    bool is_serving() const noexcept { return st_ && !st_->closed; }
    /// Connection tasks still running.
    std::size_t connections() const noexcept { return st_ ? st_->connections.size() : 0; }
    /// Waits until the server is closed and every connection task has ended.
    task<> wait_closed() {
        auto st = st_;
        if (!st) co_return;
        co_await st->all_done.wait();
    }
    /// Serves until cancelled; then closes the server, cancels the clients,
    /// waits for them and throws cancelled_error. Returns if close() is called.
    task<> serve_forever() {
        auto st = st_;
        if (!st) throw std::logic_error("offload: serve_forever on a moved-from server");
        bool cancelled = false;
        try {
            while (!st->closed) co_await st->all_done.wait();
        } catch (const cancelled_error&) {
            cancelled = true;
        }
        if (!cancelled) co_return;
        close();
        close_clients();
        co_await st->all_done.wait();
        throw cancelled_error("offload: serve_forever was cancelled; the server is closed");
    }

private:
    void shut() noexcept {
        if (!st_) return;
        close();
        close_clients();
    }
    std::shared_ptr<detail::server_state> st_;
};

namespace detail {

template <class H>
server make_server(H&& handler, const socket_address& at, server_options opts, std::string unix_path) {
    if (opts.low_water > opts.high_water)
        throw std::invalid_argument("offload: server_options: low_water must not exceed high_water");
    auto st = std::make_shared<server_state>();
    st->handler = std::forward<H>(handler);
    st->opts = opts;
    int fd = open_listener(at, opts.backlog, opts.reuse_port);
    try {
        st->listener = async_fd(fd);
    } catch (...) {
        ::close(fd);
        if (!unix_path.empty()) ::unlink(unix_path.c_str());
        throw;
    }
    st->unix_path = std::move(unix_path);
    st->port = port_of(socket_name(fd, false));
    start_accepting(st);
    return server(std::move(st));
}

} // namespace detail

/// Listens on `host`:`port` (TCP; port 0 picks a free one, see server::port();
/// an empty host means every IPv4 address, 0.0.0.0) and runs
/// `handler(stream)`, a callable returning task<>, as one task per accepted
/// connection. A name is resolved through to_thread and its first address used.
/// The handler's exceptions go to the loop's exception handler; the server goes on.
/// Example: `auto srv = co_await start_server([](stream s) -> task<> { s.write(co_await s.readline()); }, "127.0.0.1",
/// 0);`
template <class H>
task<server> start_server(H handler, std::string host, std::uint16_t port, server_options opts = {}) {
    detail::socket_address a;
    if (host.empty()) host = "0.0.0.0";
    if (!detail::parse_numeric(host, port, a)) {
        auto addrs = co_await to_thread(detail::resolve_blocking, host, port, true);
        a = addrs.front();
    }
    co_return detail::make_server(std::move(handler), a, opts, {});
}

/// Listens on the Unix socket `path` (which must not exist; it is removed when
/// the server closes), as start_server otherwise.
template <class H>
task<server> start_unix_server(H handler, std::string path, server_options opts = {}) {
    detail::socket_address a = detail::unix_address(path);
    co_return detail::make_server(std::move(handler), a, opts, path);
}

} // namespace offload
