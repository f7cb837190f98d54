// Tests of the stream server: one owned task per connection, close() /
// close_clients() / wait_closed() / serve_forever(), handler exceptions
// reported without killing the server, and an accept loop that backs off on
// EMFILE instead of spinning (in a forked child with a lowered RLIMIT_NOFILE).
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
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;
using offload::test::run_fn;

TEST_CASE("stream server: close_clients cancels every handler and wait_closed waits for them", "[stream][server]") {
    std::size_t before = test::fd_count();
    run_fn([]() -> task<> {
        int cancelled = 0;
        auto handler = [&cancelled](stream s) -> task<> {
            try {
                co_await s.wait_peer_closed();
                co_await sleep(std::chrono::hours(1));
            } catch (const cancelled_error&) {
                ++cancelled;
                throw;
            }
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        std::vector<stream> clients;
        for (int i = 0; i < 3; ++i) clients.push_back(co_await open_connection("127.0.0.1", srv.port()));
        bool all_in = co_await test::until([&] { return srv.connections() == 3; });
        REQUIRE(all_in);
        srv.close();
        REQUIRE_FALSE(srv.is_serving());
        REQUIRE_THROWS_AS(co_await open_connection("127.0.0.1", srv.port()), connection_error);
        REQUIRE(srv.connections() == 3); // close() only stops accepting
        srv.close_clients();
        co_await srv.wait_closed();
        REQUIRE(cancelled == 3);
        REQUIRE(srv.connections() == 0);
        for (auto& c : clients) {
            std::string got = co_await c.read(10); // the server side closed
            REQUIRE(got.empty());
        }
    });
    REQUIRE(test::fd_count() == before);
}

TEST_CASE("stream server: cancelling serve_forever closes the server and its clients", "[stream][server]") {
    run_fn([]() -> task<> {
        bool handler_ended = false;
        auto handler = [&](stream s) -> task<> {
            try {
                co_await sleep(std::chrono::hours(1));
            } catch (...) {
                handler_ended = true;
                throw;
            }
            (void)s;
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        auto serving = create_task([&]() -> task<> { co_await srv.serve_forever(); });
        stream c = co_await open_connection("127.0.0.1", srv.port());
        bool in = co_await test::until([&] { return srv.connections() == 1; });
        REQUIRE(in);
        serving.cancel();
        REQUIRE_THROWS_AS(co_await serving, cancelled_error);
        REQUIRE(handler_ended);
        REQUIRE_FALSE(srv.is_serving());
        REQUIRE(srv.connections() == 0);
    });
}

TEST_CASE("stream server: a handler's exception goes to the loop's exception handler; the server goes on",
          "[stream][server]") {
    run_fn([]() -> task<> {
        std::vector<std::string> errors;
        test::capture_loop_errors(errors);
        auto handler = [](stream s) -> task<> {
            std::string line = co_await s.readline();
            if (line == "boom\n") throw std::runtime_error("handler failed on purpose");
            s.write(line);
            co_await s.drain();
        };
        server srv = co_await start_server(handler, "127.0.0.1", 0);
        {
            stream c = co_await open_connection("127.0.0.1", srv.port());
            c.write("boom\n");
            std::string got = co_await c.read(10);
            REQUIRE(got.empty());
        }
        bool reported = co_await test::until([&] { return errors.size() == 1; });
        REQUIRE(reported);
        REQUIRE(errors[0].find("handler failed on purpose") != std::string::npos);
        stream c2 = co_await open_connection("127.0.0.1", srv.port());
        c2.write("ok\n");
        std::string got = co_await c2.readline();
        REQUIRE(got == "ok\n");
    });
}

TEST_CASE("stream server: a Unix server refuses a path in use and removes its own on close", "[stream][server]") {
    run_fn([]() -> task<> {
        std::string path = "/tmp/offload_server_test_" + std::to_string(::getpid()) + ".sock";
        auto handler = [](stream s) -> task<> { co_await s.wait_peer_closed(); };
        server srv = co_await start_unix_server(handler, path);
        REQUIRE(::access(path.c_str(), F_OK) == 0);
        REQUIRE_THROWS_AS(co_await start_unix_server(handler, path), std::system_error);
        REQUIRE(::access(path.c_str(), F_OK) == 0); // the failed one left the first one's path alone
        srv.close();
        co_await srv.wait_closed();
        REQUIRE(::access(path.c_str(), F_OK) != 0);
        REQUIRE_THROWS_AS(co_await start_unix_server(handler, std::string(200, 'p')), std::invalid_argument);
    });
}

// In a child: with no fd left, accept fails with EMFILE. The accept loop must
// sleep (little CPU), and accept the pending connection once an fd is free.
TEST_CASE("stream server: the accept loop backs off on EMFILE instead of spinning, then recovers", "[stream][server]") {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int code = 1;
        try {
            run_fn([&code]() -> task<> {
                bool served = false;
                auto handler = [&served](stream s) -> task<> {
                    served = true;
                    co_await s.wait_peer_closed();
                };
                server srv = co_await start_server(handler, "127.0.0.1", 0,
                                                   {.accept_backoff_min = 5ms, .accept_backoff_max = 40ms});
                int spare = ::dup(0); // hold one fd to give back later
                int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                sockaddr_in a{};
                a.sin_family = AF_INET;
                a.sin_port = htons(srv.port());
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                rlimit lim{};
                ::getrlimit(RLIMIT_NOFILE, &lim);
                rlimit low = lim;
                low.rlim_cur = static_cast<rlim_t>(std::max(spare, client) + 1); // no fd free above these
                if (::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) co_return;
                ::setrlimit(RLIMIT_NOFILE, &low);
                rusage r0{}, r1{};
                ::getrusage(RUSAGE_SELF, &r0);
                auto t0 = std::chrono::steady_clock::now();
                co_await sleep(300ms);
                ::getrusage(RUSAGE_SELF, &r1);
                auto wall = std::chrono::steady_clock::now() - t0;
                auto cpu = std::chrono::seconds(r1.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_utime.tv_sec -
                                                r0.ru_stime.tv_sec) +
                           std::chrono::microseconds(r1.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_utime.tv_usec -
                                                     r0.ru_stime.tv_usec);
                if (served) co_return;         // accepted with no fd free?
                if (cpu * 2 > wall) co_return; // spinning: more than half a core
                ::close(spare);
                bool ok = co_await test::until([&] { return served; });
                ::close(client);
                if (ok) code = 0;
            });
        } catch (...) {
        }
        ::_exit(code);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
}
