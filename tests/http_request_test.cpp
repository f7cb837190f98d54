// The HTTP request parser of examples/http_service.cpp (examples/http_request.hpp).
#include "http_request.hpp"

#include <catch2/catch.hpp>

#include <string>

TEST_CASE("http_request: a GET with a query and headers parses", "[http]") {
    auto r = http::parse_head("GET /cpu?n=5&x=y HTTP/1.1\r\nHost: localhost\r\nAccept:*/*\r\n\r\n");
    REQUIRE(r.status == 0);
    CHECK(r.req.method == "GET");
    CHECK(r.req.path == "/cpu");
    CHECK(r.req.query == "n=5&x=y");
    CHECK(r.req.minor_version == 1);
    CHECK(r.req.keep_alive);
}

TEST_CASE("http_request: keep-alive follows the version and the Connection header", "[http]") {
    CHECK_FALSE(http::parse_head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").req.keep_alive);
    CHECK_FALSE(http::parse_head("GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n").req.keep_alive);
    CHECK_FALSE(http::parse_head("GET / HTTP/1.0\r\n\r\n").req.keep_alive);
    CHECK(http::parse_head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").req.keep_alive);
    CHECK(http::parse_head("GET / HTTP/1.1\r\n\r\n").req.keep_alive);
}

TEST_CASE("http_request: malformed heads are 400, bodies 413, other versions 505", "[http]") {
    for (const char* bad : {"GARBAGE\r\n\r\n", "GET /\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1 x\r\n\r\n",
                            "GET x HTTP/1.1\r\n\r\n", "GET / HTTQ/1.1\r\n\r\n", "GET / HTTP/1.x\r\n\r\n",
                            "G(T / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nno colon\r\n\r\n",
                            "GET / HTTP/1.1\r\nbad name: v\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
                            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "GET /\x01 HTTP/1.1\r\n\r\n"}) {
        INFO(bad);
        auto r = http::parse_head(bad);
        CHECK(r.status == 400);
        CHECK_FALSE(r.req.keep_alive);
    }
    CHECK(http::parse_head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").status == 413);
    CHECK(http::parse_head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").status == 413);
    CHECK(http::parse_head("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status == 0);
    CHECK(http::parse_head("GET / HTTP/2.0\r\n\r\n").status == 505);
}

TEST_CASE("http_request: query_uint reads one bounded decimal parameter", "[http]") {
    CHECK(http::query_uint("n=42", "n", 100) == 42u);
    CHECK(http::query_uint("a=1&n=7", "n", 100) == 7u);
    CHECK(http::query_uint("nn=1&n=3", "n", 100) == 3u);
    CHECK_FALSE(http::query_uint("n=101", "n", 100));
    CHECK_FALSE(http::query_uint("n=", "n", 100));
    CHECK_FALSE(http::query_uint("n=-1", "n", 100));
    CHECK_FALSE(http::query_uint("n=1e3", "n", 100));
    CHECK_FALSE(http::query_uint("n=99999999999999999999999", "n", ~0ull));
    CHECK_FALSE(http::query_uint("", "n", 100));
    CHECK_FALSE(http::query_uint("m=1", "n", 100));
}

TEST_CASE("http_request: a response carries its length and the connection's fate", "[http]") {
    CHECK(http::response(200, "pong\n", true) ==
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n"
          "Connection: keep-alive\r\n\r\npong\n");
    auto r = http::response(405, "", false, "text/plain", "Allow: GET\r\n");
    CHECK(r == "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
               "Connection: close\r\nAllow: GET\r\n\r\n");
}
