// Tests of async_fd: one edge-triggered registration per fd (no epoll_ctl per
// wait), read_some / write_some with partial transfers, end of file and hang-up,
// a full send buffer, cancellation, one waiter per direction, closing and moving
// while a task waits, fd numbers reused after close, misuse, and an async_fd
// that outlives its loop.
#include <offload/async_fd.hpp>

#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>
#include <offload/wait_for.hpp>

#include <fd_count.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <span>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <system_error>
#include <unistd.h>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

struct raw_pair {
    int fd[2] = {-1, -1};
};

raw_pair make_socketpair(int flags = SOCK_NONBLOCK) {
    raw_pair p;
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0, p.fd) == 0);
    return p;
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::uint64_t ctl_calls() { return detail::loop_core::current()->io_ctl_calls(); }

// Lets every ready task run until it suspends again, and the loop poll its
// fds: a sleep that is not zero leaves the loop nothing ready, so it polls
// (while work is ready, the fair loop polls only every 50 us).
task<> settle() {
    for (int i = 0; i < 3; ++i) co_await sleep(1ms);
}

// Answers each byte it reads with the same byte, until end of file.
task<long> echo(async_fd& fd) {
    long n = 0;
    std::byte b[1];
    for (;;) {
        std::size_t got = co_await fd.read_some(b);
        if (got == 0) co_return n;
        std::size_t put = co_await fd.write_some(b);
        REQUIRE(put == 1u);
        ++n;
    }
}

task<std::size_t> read_into(async_fd& fd, std::vector<std::byte>& buf) { co_return co_await fd.read_some(buf); }

task<> wait_readable(async_fd& fd) { co_await fd.readable(); }
task<> wait_writable(async_fd& fd) { co_await fd.writable(); }

} // namespace

TEST_CASE("async_fd: a ping-pong between two tasks makes no epoll_ctl call after the registrations", "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        const std::uint64_t before = ctl_calls();
        async_fd a(p.fd[0]), b(p.fd[1]);
        REQUIRE(ctl_calls() - before == 2u); // one EPOLL_CTL_ADD each
        auto echoer = create_task(echo(b));
        const std::uint64_t start = ctl_calls();
        std::byte out[1], in[1];
        for (int i = 0; i < 500; ++i) {
            out[0] = std::byte(i & 0xff);
            std::size_t put = co_await a.write_some(out);
            REQUIRE(put == 1u);
            std::size_t got = co_await a.read_some(in);
            REQUIRE(got == 1u);
            REQUIRE(in[0] == out[0]);
        }
        // Each side waited for readability hundreds of times: still no epoll_ctl.
        CHECK(ctl_calls() - start == 0u);
        ::shutdown(a.fd(), SHUT_WR); // the echoer reads end of file
        long echoed = co_await echoer;
        CHECK(echoed == 500);
        b.close();
        CHECK(ctl_calls() - start == 1u); // EPOLL_CTL_DEL
    }());
}

TEST_CASE("async_fd: a raw readable(fd) wait costs epoll_ctl calls every time (the counter sees them)",
          "[async_fd][io]") {
    // The contrast to the test above, and proof that the counter counts.
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        auto& loop = event_loop::current();
        const std::uint64_t start = ctl_calls();
        for (int i = 0; i < 3; ++i) {
            char c = 'x';
            REQUIRE(::write(p.fd[0], &c, 1) == 1);
            co_await loop.readable(p.fd[1]);
            REQUIRE(::read(p.fd[1], &c, 1) == 1);
        }
        CHECK(ctl_calls() - start == 6u); // add + remove per wait
        ::close(p.fd[0]);
        ::close(p.fd[1]);
    }());
}

TEST_CASE("async_fd: read_some returns what is there, in parts when the buffer is smaller", "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd a(p.fd[0]), b(p.fd[1]);
        std::size_t put = co_await a.write_some(bytes_of("0123456789"));
        REQUIRE(put == 10u);
        std::vector<std::byte> buf(4);
        std::string got;
        for (std::size_t want : {4u, 4u, 2u}) {
            std::size_t n = co_await b.read_some(buf);
            REQUIRE(n == want);
            got.append(reinterpret_cast<const char*>(buf.data()), n);
        }
        CHECK(got == "0123456789");
        // The last read was short: the socket is drained, and the bit is
        // cleared without a read that meets EAGAIN. The next read waits.
        CHECK_FALSE(b.read_ready());
        auto reader = create_task(read_into(b, buf));
        co_await settle();
        CHECK_FALSE(reader.done());
        CHECK_FALSE(b.read_ready());
        put = co_await a.write_some(bytes_of("ab"));
        REQUIRE(put == 2u);
        std::size_t n = co_await reader;
        CHECK(n == 2u);
        CHECK(static_cast<char>(buf[0]) == 'a');
        // An empty buffer reads nothing and returns 0.
        put = co_await a.write_some(bytes_of("c"));
        std::size_t none = co_await b.read_some({});
        CHECK(none == 0u);
    }());
}

TEST_CASE("async_fd: a short read of a datagram socket does not hide the datagrams queued behind it",
          "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p;
        REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p.fd) == 0);
        async_fd a(p.fd[0]), b(p.fd[1]);
        for (const char* m : {"one", "two", "three"}) {
            std::size_t put = co_await a.write_some(bytes_of(m));
            REQUIRE(put == std::strlen(m));
        }
        std::vector<std::byte> buf(64);
        std::string got;
        for (int i = 0; i < 3; ++i) {
            // Each read is short (one datagram), yet more are queued: no new
            // edge will come for them, so the bit must stay set.
            auto reader = create_task(read_into(b, buf));
            co_await settle();
            REQUIRE(reader.done());
            std::size_t n = co_await reader;
            got.append(reinterpret_cast<const char*>(buf.data()), n).push_back(' ');
        }
        CHECK(got == "one two three ");
    }());
}

TEST_CASE("async_fd: end of file wakes a waiting reader, which then reads 0", "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd a(p.fd[0]), b(p.fd[1]);
        std::vector<std::byte> buf(16);
        auto reader = create_task(read_into(b, buf));
        co_await settle();
        REQUIRE_FALSE(reader.done());
        ::shutdown(a.fd(), SHUT_WR);
        std::size_t n = co_await reader;
        CHECK(n == 0u);
        // End of file stays: later reads return 0 at once, readable() does not wait.
        n = co_await b.read_some(buf);
        CHECK(n == 0u);
        co_await b.readable();
        // The other direction still works (a half-closed socket).
        std::size_t put = co_await b.write_some(bytes_of("back"));
        CHECK(put == 4u);
        n = co_await a.read_some(buf);
        CHECK(n == 4u);
    }());
}

TEST_CASE("async_fd: a peer that closes wakes a waiting reader and writer; writing then throws EPIPE",
          "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd b(p.fd[1]);
        // Fill b's send buffer, so that a writable() wait blocks too.
        std::string chunk(65536, 'f');
        for (;;) {
            ssize_t n = ::send(b.fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
            if (n < 0) break;
        }
        b.clear_write_ready();
        auto reader = create_task(wait_readable(b));
        auto writer = create_task(wait_writable(b));
        co_await settle();
        REQUIRE_FALSE(reader.done());
        REQUIRE_FALSE(writer.done());
        ::close(p.fd[0]); // hang-up: both directions wake
        co_await reader;
        co_await writer;
        CHECK(b.read_ready());
        CHECK(b.write_ready());
        b.clear_write_ready(); // kept set after a hang-up: a wait would never end otherwise
        CHECK(b.write_ready());
        std::string err;
        try {
            co_await b.write_some(bytes_of("x"));
        } catch (const std::system_error& e) {
            CHECK((e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset));
            err = e.what();
        }
        CHECK(err.find("write to fd") != std::string::npos);
    }());
}

TEST_CASE("async_fd: a write to a full socket waits until the peer reads", "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd a(p.fd[0]), b(p.fd[1]);
        std::vector<std::byte> chunk(65536, std::byte{'w'});
        std::size_t sent = 0;
        // Write until a write_some has to wait (the buffer is full).
        auto writer = create_task(
            [](async_fd* fd, std::vector<std::byte>* c, std::size_t* total) -> task<> {
                for (;;) *total += co_await fd->write_some(*c);
            },
            &a, &chunk, &sent);
        co_await settle();
        REQUIRE_FALSE(writer.done());
        REQUIRE(sent > 0u);
        CHECK_FALSE(a.write_ready());
        const std::size_t stuck_at = sent;
        co_await settle();
        CHECK(sent == stuck_at);
        // Reading makes room: the writer goes on.
        std::vector<std::byte> buf(65536);
        std::size_t drained = 0;
        for (int i = 0; i < 2000 && sent == stuck_at; ++i) {
            drained += co_await b.read_some(buf);
            co_await sleep(0ms);
        }
        CHECK(sent > stuck_at);
        CHECK(drained > 0u);
        writer.cancel();
        REQUIRE_THROWS_AS(co_await writer, cancelled_error);
    }());
}

TEST_CASE("async_fd: a cancelled wait leaves its slot; the next wait works without epoll_ctl",
          "[async_fd][io][cancel]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd a(p.fd[0]), b(p.fd[1]);
        const std::uint64_t start = ctl_calls();
        auto waiting = create_task(wait_readable(b));
        co_await settle();
        REQUIRE(waiting.cancel());
        REQUIRE_THROWS_AS(co_await waiting, cancelled_error);

        std::vector<std::byte> buf(8);
        auto reading = create_task(read_into(b, buf));
        co_await settle();
        REQUIRE(reading.cancel());
        REQUIRE_THROWS_AS(co_await reading, cancelled_error);

        auto again = create_task(read_into(b, buf));
        co_await settle();
        co_await a.write_some(bytes_of("k"));
        std::size_t n = co_await again;
        CHECK(n == 1u);
        CHECK(static_cast<char>(buf[0]) == 'k');
        CHECK(ctl_calls() - start == 0u);
    }());
}

TEST_CASE("async_fd: a read cancelled just before its fd turns readable reads nothing; the byte waits for the next "
          "read",
          "[async_fd][io][cancel]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair(), x = make_socketpair();
        async_fd a(p.fd[0]), b(p.fd[1]);
        std::vector<std::byte> buf(8);
        auto reader = create_task(read_into(b, buf));
        co_await settle();
        REQUIRE_FALSE(reader.done());
        // One poll reports x first, then b: x's callback cancels the reader,
        // and b's edge, right after, must not read for (or wake) the cancelled task.
        auto& loop = event_loop::current();
        loop.add_reader(x.fd[1], [&] {
            reader.cancel();
            loop.remove_reader(x.fd[1]);
        });
        REQUIRE(::write(x.fd[0], "x", 1) == 1);
        REQUIRE(::write(p.fd[0], "b", 1) == 1);
        REQUIRE_THROWS_AS(co_await reader, cancelled_error);
        CHECK(b.read_ready());
        std::size_t n = co_await b.read_some(buf);
        CHECK(n == 1u);
        CHECK(static_cast<char>(buf[0]) == 'b');
        for (int f : x.fd) ::close(f);
        (void)a;
    }());
}

TEST_CASE("async_fd: read_some under wait_for times out and frees its slot", "[async_fd][io][cancel]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd a(p.fd[0]), b(p.fd[1]);
        std::vector<std::byte> buf(8);
        REQUIRE_THROWS_AS(co_await wait_for(b.read_some(buf), 20ms), timeout_error);
        co_await a.write_some(bytes_of("t"));
        std::size_t n = co_await wait_for(b.read_some(buf), 10s);
        CHECK(n == 1u);
    }());
}

TEST_CASE("async_fd: a read done for a task whose cancellation comes later keeps its bytes", "[async_fd][io][cancel]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair(), q = make_socketpair();
        async_fd a(p.fd[0]), b(p.fd[1]), c(q.fd[0]), d(q.fd[1]);
        std::vector<std::byte> buf(8);
        std::size_t got = 0;
        bool cancelled_later = false;
        auto reader = create_task(
            [](async_fd* fd, std::vector<std::byte>* bf, std::size_t* g, bool* cl) -> task<> {
                *g = co_await fd->read_some(*bf);
                try {
                    co_await sleep(0ms);
                } catch (const cancelled_error&) {
                    *cl = true;
                    throw;
                }
            },
            &b, &buf, &got, &cancelled_later);
        co_await settle();
        REQUIRE_FALSE(reader.done());
        // Both edges come in one poll, d's first: this task is queued before
        // the reader, whose read_some has read its byte by then.
        REQUIRE(::write(q.fd[0], "w", 1) == 1);
        REQUIRE(::write(p.fd[0], "z", 1) == 1);
        co_await d.readable();
        REQUIRE(got == 0u); // the reader has not run yet
        reader.cancel();
        REQUIRE_THROWS_AS(co_await reader, cancelled_error);
        CHECK(got == 1u); // the byte read for it was returned, not lost
        CHECK(static_cast<char>(buf[0]) == 'z');
        CHECK(cancelled_later);
        (void)a;
        (void)c;
    }());
}

TEST_CASE("async_fd: a second task waiting for the same direction is an error; a reader and a writer may wait",
          "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd a(p.fd[0]), b(p.fd[1]);
        std::vector<std::byte> buf(8), buf2(8);
        auto first = create_task(read_into(b, buf));
        co_await settle();
        REQUIRE_FALSE(first.done());
        auto second = create_task(read_into(b, buf2));
        std::string what;
        try {
            co_await second;
        } catch (const std::logic_error& e) {
            what = e.what();
        }
        CHECK(what.find("already waits") != std::string::npos);
        // The writer side is free.
        co_await b.writable();
        co_await a.write_some(bytes_of("1"));
        std::size_t n = co_await first;
        CHECK(n == 1u);
    }());
}

TEST_CASE("async_fd: closing or destroying an async_fd wakes its waiters with operation_canceled and closes the fd",
          "[async_fd][io]") {
    const std::size_t fds_before = test::fd_count();
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd a(p.fd[0]);
        auto b = std::make_unique<async_fd>(p.fd[1]);
        std::vector<std::byte> buf(8);
        auto reader = create_task(read_into(*b, buf));
        co_await settle();
        REQUIRE_FALSE(reader.done());
        b.reset(); // destroyed while a task waits
        std::error_code code;
        try {
            co_await reader;
        } catch (const std::system_error& e) {
            code = e.code();
        }
        CHECK(code == std::errc::operation_canceled);
        CHECK(::fcntl(p.fd[1], F_GETFD) == -1); // closed

        // Awaiting a closed one is an error that says so.
        a.close();
        CHECK_FALSE(a.is_open());
        CHECK(a.fd() == -1);
        REQUIRE_THROWS_AS(co_await a.readable(), std::logic_error);
    }());
    CHECK(test::fd_count() == fds_before);
}

TEST_CASE("async_fd: moving an async_fd while a task waits on it keeps the wait", "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd a(p.fd[0]), b(p.fd[1]);
        std::vector<std::byte> buf(8);
        auto reader = create_task(read_into(b, buf));
        co_await settle();
        async_fd moved = std::move(b);
        CHECK_FALSE(b.is_open());
        async_fd again;
        again = std::move(moved);
        co_await a.write_some(bytes_of("m"));
        std::size_t n = co_await reader;
        CHECK(n == 1u);
        CHECK(again.fd() == p.fd[1]);
        // Move-assigning over an open async_fd closes the old fd.
        raw_pair q = make_socketpair();
        again = async_fd(q.fd[0]);
        CHECK(::fcntl(p.fd[1], F_GETFD) == -1);
        ::close(q.fd[1]);
    }());
}

TEST_CASE("async_fd: an fd number reused after close is registered again and works", "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        const int first = p.fd[0], second = p.fd[1];
        {
            async_fd a(first), b(second);
            co_await a.write_some(bytes_of("1"));
            std::vector<std::byte> buf(4);
            std::size_t n = co_await b.read_some(buf);
            REQUIRE(n == 1u);
        } // both closed (and removed from epoll first)
        // The kernel hands out the lowest free numbers: the same ones again.
        raw_pair q = make_socketpair();
        REQUIRE(q.fd[0] == first);
        REQUIRE(q.fd[1] == second);
        async_fd a(q.fd[0]), b(q.fd[1]);
        std::vector<std::byte> buf(4);
        auto reader = create_task(read_into(b, buf));
        co_await settle();
        co_await a.write_some(bytes_of("2"));
        std::size_t n = co_await reader; // a registration left for the old file would never fire here
        CHECK(n == 1u);
        CHECK(static_cast<char>(buf[0]) == '2');
    }());
}

TEST_CASE("async_fd: close removes the fd from epoll first: a file still open elsewhere does not wake the number's "
          "next owner",
          "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        const int number = p.fd[1];
        const int dup = ::fcntl(p.fd[1], F_DUPFD_CLOEXEC, 100); // keeps the old file open (as a fork would)
        REQUIRE(dup >= 100);
        {
            async_fd old(p.fd[1]);
        } // closed; without EPOLL_CTL_DEL epoll would keep watching the file, which dup keeps alive
        raw_pair q = make_socketpair();
        REQUIRE((q.fd[0] == number || q.fd[1] == number));
        const int other = q.fd[0] == number ? q.fd[1] : q.fd[0];
        async_fd now(number), peer(other);
        co_await settle();
        now.clear_read_ready();
        auto waiting = create_task(wait_readable(now));
        co_await settle();
        REQUIRE(::write(p.fd[0], "o", 1) == 1); // data for the old file only
        co_await settle();
        CHECK_FALSE(waiting.done()); // no spurious wake-up from the old registration
        co_await peer.write_some(bytes_of("n"));
        co_await waiting;
        ::close(dup);
        ::close(p.fd[0]);
    }());
}

TEST_CASE("async_fd: an fd closed behind the async_fd's back cannot be registered again (no silent hang)",
          "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        async_fd a(p.fd[0]);
        const int n = a.fd();
        ::close(n); // wrong: the async_fd owns it
        raw_pair q = make_socketpair();
        REQUIRE(q.fd[0] == n);
        std::string what;
        try {
            async_fd b(q.fd[0]);
        } catch (const std::logic_error& e) {
            what = e.what();
        }
        CHECK(what.find("already registered") != std::string::npos);
        CHECK(a.release() == n); // let go without closing q's fd
        async_fd b(q.fd[0]), c(q.fd[1]);
        co_await b.write_some(bytes_of("r"));
        std::vector<std::byte> buf(4);
        std::size_t got = co_await c.read_some(buf);
        CHECK(got == 1u);
        ::close(p.fd[1]);
    }());
}

TEST_CASE("async_fd: release hands the fd back open and registered nowhere", "[async_fd][io]") {
    run([]() -> task<> {
        raw_pair p = make_socketpair();
        int fd = -1;
        {
            async_fd a(p.fd[0]);
            fd = a.release();
            CHECK_FALSE(a.is_open());
        }
        REQUIRE(fd == p.fd[0]);
        CHECK(::fcntl(fd, F_GETFD) != -1); // still open
        // The loop can watch it the raw way again.
        char c = 'x';
        REQUIRE(::write(p.fd[1], &c, 1) == 1);
        co_await event_loop::current().readable(fd);
        ::close(fd);
        ::close(p.fd[1]);
    }());
}

TEST_CASE("async_fd: write_some on a pipe (not a socket) falls back to write", "[async_fd][io]") {
    run([]() -> task<> {
        int pp[2];
        REQUIRE(::pipe2(pp, O_NONBLOCK | O_CLOEXEC) == 0);
        async_fd r(pp[0]), w(pp[1]);
        std::size_t put = co_await w.write_some(bytes_of("pipe"));
        CHECK(put == 4u);
        std::vector<std::byte> buf(8);
        std::size_t got = co_await r.read_some(buf);
        CHECK(got == 4u);
        w.close();
        got = co_await r.read_some(buf);
        CHECK(got == 0u); // end of file (EPOLLHUP on a pipe)
    }());
}

TEST_CASE("async_fd: bad input is refused with a message that says what to do", "[async_fd]") {
    raw_pair blocking = make_socketpair(0);
    // Outside a loop.
    REQUIRE_THROWS_AS(async_fd(blocking.fd[0]), std::logic_error);
    run([](raw_pair bp) -> task<> {
        std::string what;
        try {
            async_fd a(bp.fd[0]);
        } catch (const std::invalid_argument& e) {
            what = e.what();
        }
        CHECK(what.find("O_NONBLOCK") != std::string::npos);
        CHECK(::fcntl(bp.fd[0], F_GETFD) != -1); // not taken: still open

        REQUIRE_THROWS_AS(async_fd(-1), std::system_error);

        // A regular file: epoll cannot watch it.
        char path[] = "/tmp/offload_async_fd_XXXXXX";
        int file = ::mkstemp(path);
        REQUIRE(file >= 0);
        ::unlink(path);
        ::fcntl(file, F_SETFL, ::fcntl(file, F_GETFL) | O_NONBLOCK);
        REQUIRE_THROWS_AS(async_fd(file), std::system_error);
        ::close(file);

        // An fd the loop watches already, either way round.
        raw_pair p = make_socketpair();
        auto& loop = event_loop::current();
        loop.add_reader(p.fd[0], [] {});
        REQUIRE_THROWS_AS(async_fd(p.fd[0]), std::logic_error);
        loop.remove_reader(p.fd[0]);
        async_fd owned(p.fd[0]);
        REQUIRE_THROWS_AS(loop.add_reader(p.fd[0], [] {}), std::logic_error);
        REQUIRE_THROWS_AS(co_await loop.readable(p.fd[0]), std::logic_error);
        REQUIRE_THROWS_AS(async_fd(p.fd[0]), std::logic_error);

        // An empty one.
        async_fd empty;
        REQUIRE_THROWS_AS(co_await empty.read_some({}), std::logic_error);
        ::close(p.fd[1]);
        ::close(bp.fd[0]);
        ::close(bp.fd[1]);
    }(blocking));
}

TEST_CASE("async_fd: an async_fd may outlive its loop, and a task waiting at loop teardown is torn down cleanly",
          "[async_fd][io]") {
    const std::size_t fds_before = test::fd_count();
    raw_pair p = make_socketpair(), q = make_socketpair();
    async_fd outer, waited;
    {
        event_loop loop;
        loop.run_until_complete([](async_fd* out, async_fd* w, raw_pair rp, raw_pair rq) -> task<> {
            *out = async_fd(rp.fd[0]);
            *w = async_fd(rq.fd[0]);
            create_task(wait_readable(*w)); // never finishes: the loop's destructor tears it down
            co_await settle();
        }(&outer, &waited, p, q));
    } // the loop goes: both forget it
    CHECK(outer.is_open());
    CHECK(waited.is_open());
    std::string what;
    try {
        event_loop other;
        other.run_until_complete([](async_fd* o) -> task<> { co_await o->readable(); }(&outer));
    } catch (const std::logic_error& e) {
        what = e.what();
    }
    CHECK(what.find("outlived") != std::string::npos);
    outer.close();
    waited.close();
    ::close(p.fd[1]);
    ::close(q.fd[1]);
    CHECK(test::fd_count() == fds_before);
}
