// Tests of stream: reads (read, read_exactly, read_until / readline and their
// limit), buffered writes with drain() backpressure against a slow reader,
// half-close, a peer that disconnects mid-read, mid-write and during drain,
// wait_peer_closed, cancellation of a pending read and connect, TCP over IPv4,
// IPv6 and a resolved name, Unix sockets, and no fd leak.
#include <offload/stream.hpp>

#include <offload/event.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <fd_count.hpp>
#include <stream_helpers.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::run_fn;

namespace {

task<> echo_lines(stream s) {
    for (;;) {
        std::string line;
        try {
            line = co_await s.readline();
        } catch (const incomplete_read_error&) {
            co_return;
        }
        s.write(line);
        co_await s.drain();
    }
}

bool ipv6_loopback_available() {
    int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

task<> round_trip(std::string host) {
    server srv = co_await start_server(echo_lines, host, 0);
    REQUIRE(srv.port() != 0);
    stream c = co_await open_connection(host, srv.port());
    c.write("hello\n");
    std::string got = co_await c.readline();
    REQUIRE(got == "hello\n");
    c.write("a\nb\n");
    std::string a = co_await c.readline();
    std::string b = co_await c.readline();
    REQUIRE(a + b == "a\nb\n");
    REQUIRE(c.peer_address().ends_with(":" + std::to_string(srv.port())));
    c.close();
    srv.close();
    co_await srv.wait_closed();
}

} // namespace

TEST_CASE("stream: an echo round trip over TCP IPv4 with a numeric host", "[stream]") {
    run_fn([]() -> task<> { co_await round_trip("127.0.0.1"); });
}

TEST_CASE("stream: an echo round trip over TCP IPv6 where the host has it", "[stream]") {
    if (!ipv6_loopback_available())
        SUCCEED("no IPv6 loopback here");
    else
        run_fn([]() -> task<> { co_await round_trip("::1"); });
}

TEST_CASE("stream: a host name is resolved off the loop (localhost)", "[stream]") {
    run_fn([]() -> task<> {
        server srv = co_await start_server(echo_lines, "127.0.0.1", 0);
        stream c = co_await open_connection("localhost", srv.port());
        c.write("x\n");
        std::string got = co_await c.readline();
        REQUIRE(got == "x\n");
    });
}

TEST_CASE("stream: a refused connection says what and where", "[stream]") {
    run_fn([]() -> task<> {
        std::uint16_t port;
        {
            server srv = co_await start_server(echo_lines, "127.0.0.1", 0);
            port = srv.port();
            srv.close();
            co_await srv.wait_closed();
        }
        try {
            (void)co_await open_connection("127.0.0.1", port);
            FAIL("connected to a closed port");
        } catch (const connection_error& e) {
            std::string want = "connection refused to 127.0.0.1:" + std::to_string(port);
            REQUIRE(std::string(e.what()).find(want) != std::string::npos);
            REQUIRE(e.code() == std::errc::connection_refused);
        }
        REQUIRE_THROWS_AS(co_await open_connection("no-such-host.invalid", 80), connection_error);
    });
}

TEST_CASE("stream: read_exactly meets end of file: incomplete_read_error with the partial bytes", "[stream]") {
    run_fn([]() -> task<> {
        auto handler = [](stream s) -> task<> {
            s.write("abc");
            co_await s.drain();
            s.close();
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        stream c = co_await open_connection("127.0.0.1", srv.port());
        try {
            (void)co_await c.read_exactly(10);
            FAIL("read 10 bytes of 3");
        } catch (const incomplete_read_error& e) {
            REQUIRE(e.partial() == "abc");
            REQUIRE(e.expected() == 10u);
        }
        REQUIRE(c.at_eof());
        std::string rest = co_await c.read(100);
        REQUIRE(rest.empty());
    });
}

TEST_CASE("stream: read returns what is there, read_until finds a delimiter split across reads", "[stream]") {
    run_fn([]() -> task<> {
        event go;
        auto handler = [&go](stream s) -> task<> {
            s.write("part one, ");
            co_await go.wait();
            s.write("part two\r\n\r\nbody");
            co_await s.drain();
            s.close();
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        stream c = co_await open_connection("127.0.0.1", srv.port());
        std::string first = co_await c.read(4);
        REQUIRE(first == "part");
        go.set();
        std::string head = co_await c.read_until("\r\n\r\n");
        REQUIRE(head == " one, part two\r\n\r\n");
        std::string body = co_await c.read_exactly(4);
        REQUIRE(body == "body");
        std::string end = co_await c.read(10);
        REQUIRE(end.empty());
        REQUIRE(c.at_eof());
    });
}

TEST_CASE("stream: a line longer than the limit is limit_overrun_error and stays in the buffer", "[stream]") {
    run_fn([]() -> task<> {
        auto handler = [](stream s) -> task<> {
            s.write(std::string(100, 'x') + "\n");
            co_await s.drain();
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        stream c = co_await open_connection("127.0.0.1", srv.port(), {.limit = 16});
        try {
            (void)co_await c.readline();
            FAIL("no overrun");
        } catch (const limit_overrun_error& e) {
            REQUIRE(e.consumed() > 16u);
            REQUIRE(c.read_buffer_size() >= e.consumed());
        }
        std::string skip = co_await c.read_exactly(100);
        REQUIRE(skip == std::string(100, 'x'));
        std::string nl = co_await c.readline();
        REQUIRE(nl == "\n");
    });
}

TEST_CASE("stream: write_eof half-closes; the peer reads to end of file and still answers", "[stream]") {
    run_fn([]() -> task<> {
        auto handler = [](stream s) -> task<> {
            std::size_t total = 0;
            for (;;) {
                std::string b = co_await s.read(1000);
                if (b.empty()) break;
                total += b.size();
            }
            s.write("got " + std::to_string(total));
            co_await s.drain();
        };
        std::string path = "/tmp/offload_stream_test_" + std::to_string(::getpid()) + ".sock";
        server srv = co_await start_unix_server(handler, path);
        stream c = co_await open_unix_connection(path);
        REQUIRE(c.peer_address() == "unix:" + path);
        c.write(std::string(5000, 'y'));
        c.write_eof();
        std::string reply = co_await c.read_exactly(8);
        REQUIRE(reply == "got 5000");
        srv.close();
        REQUIRE(::access(path.c_str(), F_OK) != 0); // the socket file is gone
        co_await srv.wait_closed();
    });
}

TEST_CASE("stream: a slow reader fills the write buffer, drain suspends, then resumes", "[stream]") {
    run_fn([]() -> task<> {
        event start_reading;
        std::size_t received = 0;
        auto handler = [&](stream s) -> task<> {
            co_await start_reading.wait();
            for (;;) {
                std::string b = co_await s.read(1 << 16);
                if (b.empty()) co_return;
                received += b.size();
            }
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        stream c = co_await open_connection("127.0.0.1", srv.port(), {.high_water = 1 << 16, .low_water = 1 << 14});
        const std::string chunk(1 << 16, 'z');
        std::size_t sent = 0;
        bool drain_done = false;
        // Fill until the kernel buffers and ours are over the high-water mark.
        while (c.write_buffer_size() <= c.options().high_water) {
            c.write(chunk);
            sent += chunk.size();
        }
        auto drainer = create_task([&]() -> task<> {
            co_await c.drain();
            drain_done = true;
        });
        bool stuck = co_await test::until([] { return false; }, 50ms); // give drain a chance to (wrongly) finish
        REQUIRE_FALSE(stuck);
        REQUIRE_FALSE(drain_done);
        start_reading.set();
        co_await drainer;
        REQUIRE(drain_done);
        REQUIRE(c.write_buffer_size() <= c.options().low_water);
        c.close();
        bool all = co_await test::until([&] { return received == sent; });
        REQUIRE(all);
    });
}

TEST_CASE("stream: a peer that disconnects during drain makes drain throw connection_reset_error", "[stream]") {
    run_fn([]() -> task<> {
        event stop;
        auto handler = [&stop](stream s) -> task<> {
            co_await stop.wait();
            s.abort();
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        stream c = co_await open_connection("127.0.0.1", srv.port());
        const std::string chunk(1 << 16, 'q');
        while (c.write_buffer_size() <= c.options().high_water) c.write(chunk);
        auto drainer = create_task([&]() -> task<> { co_await c.drain(); });
        stop.set();
        REQUIRE_THROWS_AS(co_await drainer, connection_reset_error);
        // Writing on after that drops the bytes; drain keeps saying why.
        c.write("more");
        REQUIRE_THROWS_AS(co_await c.drain(), connection_reset_error);
    });
}

TEST_CASE("stream: a peer that disconnects mid-read gives the partial bytes; mid-write an error, no SIGPIPE",
          "[stream]") {
    run_fn([]() -> task<> {
        auto handler = [](stream s) -> task<> {
            s.write("12345");
            co_await s.drain();
            std::string b = co_await s.read(1); // the client's first byte, then go away with unread data
            (void)b;
            s.abort();
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        stream c = co_await open_connection("127.0.0.1", srv.port());
        c.write("ab");
        try {
            (void)co_await c.read_exactly(100);
            FAIL("read 100 of 5");
        } catch (const incomplete_read_error& e) {
            REQUIRE(e.partial() == "12345");
        } catch (const connection_reset_error&) { // the unread byte makes the peer's close a reset: also fine
        }
        bool failed = false;
        for (int i = 0; i < 1000 && !failed; ++i) {
            try {
                c.write(std::string(4096, 'w'));
                co_await c.drain();
                co_await sleep(1ms);
            } catch (const connection_reset_error&) {
                failed = true;
            }
        }
        REQUIRE(failed);
    });
}

TEST_CASE("stream: wait_peer_closed completes when the client goes, without taking its data", "[stream]") {
    run_fn([]() -> task<> {
        bool saw_close = false;
        std::string later;
        auto handler = [&](stream s) -> task<> {
            co_await s.wait_peer_closed();
            saw_close = true;
            later = co_await s.read(100);
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        {
            stream c = co_await open_connection("127.0.0.1", srv.port());
            c.write("data");
            co_await sleep(5ms);
            REQUIRE_FALSE(saw_close);
        }
        bool ok = co_await test::until([&] { return saw_close && srv.connections() == 0; });
        REQUIRE(ok);
        REQUIRE(later == "data");
    });
}

TEST_CASE("stream: a cancelled read throws cancelled_error and leaves the stream usable", "[stream]") {
    run_fn([]() -> task<> {
        event go;
        auto handler = [&go](stream s) -> task<> {
            co_await go.wait();
            s.write("late\n");
            co_await s.drain();
            co_await s.wait_peer_closed();
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        stream c = co_await open_connection("127.0.0.1", srv.port());
        auto reader = create_task([&]() -> task<> { (void)co_await c.readline(); });
        co_await sleep(2ms);
        reader.cancel();
        REQUIRE_THROWS_AS(co_await reader, cancelled_error);
        go.set();
        std::string line = co_await c.readline();
        REQUIRE(line == "late\n");
    });
}

TEST_CASE("stream: a cancelled connect closes its socket", "[stream]") {
    std::size_t before = test::fd_count();
    run_fn([]() -> task<> {
        // 192.0.2.1 (TEST-NET-1) never answers: the connect stays pending (or fails at once where unroutable).
        auto h = create_task([]() -> task<> { (void)co_await open_connection("192.0.2.1", 9); });
        co_await sleep(5ms);
        h.cancel();
        try {
            co_await h;
        } catch (const cancelled_error&) {
        } catch (const connection_error&) {
        }
    });
    REQUIRE(test::fd_count() == before);
}

TEST_CASE("stream: a hundred connections leak no fd", "[stream]") {
    std::size_t before = test::fd_count();
    run_fn([]() -> task<> {
        server srv = co_await start_server(echo_lines, "127.0.0.1", 0);
        for (int i = 0; i < 100; ++i) {
            stream c = co_await open_connection("127.0.0.1", srv.port());
            c.write("ping\n");
            std::string got = co_await c.readline();
            REQUIRE(got == "ping\n");
        }
        srv.close();
        srv.close_clients();
        co_await srv.wait_closed();
    });
    REQUIRE(test::fd_count() == before);
}
