// stream_options_test.cpp — the defaults (asyncio's: 64 KiB limit, low water a
// quarter of high), a server's options handed to each accepted stream, and
// water marks in the wrong order refused with a message that says what to fix.
#include <offload/stream.hpp>
#include <offload/stream_options.hpp>

#include <catch2/catch.hpp>
#include <stream_helpers.hpp>

#include <stdexcept>
#include <string>

using namespace offload;

TEST_CASE("defaults follow asyncio", "[stream_options]") {
    stream_options s;
    CHECK(s.limit == 64 * 1024);
    CHECK(s.high_water == 64 * 1024);
    CHECK(s.low_water == s.high_water / 4);
    server_options o;
    CHECK(o.accept_backoff_min < o.accept_backoff_max);
    CHECK(o.backlog > 0);
}

TEST_CASE("server_options::stream() gives each accepted stream the server's settings", "[stream_options]") {
    server_options o{.limit = 100, .high_water = 4096, .low_water = 1024};
    stream_options s = o.stream();
    CHECK(s.limit == 100);
    CHECK(s.high_water == 4096);
    CHECK(s.low_water == 1024);
}

TEST_CASE("an accepted stream has the server's options", "[stream_options]") {
    test::run_fn([]() -> task<> {
        stream_options seen{};
        auto on_client = [&seen](stream s) -> task<> {
            seen = s.options();
            co_return;
        };
        server srv = co_await start_server(on_client, "127.0.0.1", 0,
                                           {.limit = 123, .high_water = 8000, .low_water = 10});
        stream c = co_await open_connection("127.0.0.1", srv.port());
        auto accepted = [&seen] { return seen.limit == 123; };
        CHECK(co_await test::eventually(accepted));
        CHECK(seen.high_water == 8000);
        CHECK(seen.low_water == 10);
        c.close();
        srv.close();
        co_await srv.wait_closed();
    });
}

TEST_CASE("low water above high water is refused", "[stream_options]") {
    test::run_fn([]() -> task<> {
        auto on_client = [](stream) -> task<> { co_return; };
        std::string msg;
        try {
            server srv = co_await start_server(on_client, "127.0.0.1", 0, {.high_water = 10, .low_water = 20});
            srv.close();
            co_await srv.wait_closed();
        } catch (const std::invalid_argument& e) {
            msg = e.what();
        }
        CHECK(msg.find("low_water must not exceed high_water") != std::string::npos);
    });
}
