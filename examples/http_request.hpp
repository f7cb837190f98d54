// http_request.hpp — the little HTTP/1.x that examples/http_service.cpp
// speaks: parse a request head (request line, headers,
// keep-alive, a body we refuse), read one query parameter, format a response.
// No I/O here, so it is tested on its own (tests/http_request_test.cpp).
// Not a general HTTP library: enough to serve GET endpoints correctly.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace http {

/// Bytes a request head (request line and headers) may take before the
/// answer is 431 Request Header Fields Too Large.
inline constexpr std::size_t max_head_size = 8 * 1024;

/// A parsed request head.
struct request {
    std::string_view method; ///< "GET", ...
    std::string_view path;   ///< the target before '?', e.g. "/cpu"
    std::string_view query;  ///< the target after '?' (may be empty)
    int minor_version = 1;   ///< HTTP/1.<minor_version>
    bool keep_alive = true;  ///< the connection stays open after the response
};

/// What parse_head found: a request, or the status to answer (400, 413, 505)
/// with a reason for the body. An error always closes the connection.
struct parse_result {
    int status = 0; ///< 0: ok, `req` is valid; otherwise the status to answer
    const char* reason = "";
    request req;
};

namespace detail {

// RFC 9110 tchar: the characters of a method or a header name.
inline bool is_token_char(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

inline bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_token_char(c)) return false;
    return true;
}

inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// The next line of `rest` without its LF or CRLF; advances `rest` past it.
inline std::string_view next_line(std::string_view& rest) {
    std::size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
}

} // namespace detail

/// Parses a complete head (up to and including its blank line). The views in
/// the result point into `head`.
inline parse_result parse_head(std::string_view head) {
    parse_result r;
    auto fail = [&](int status, const char* reason) {
        r.status = status;
        r.reason = reason;
        r.req.keep_alive = false;
        return r;
    };
    std::string_view rest = head;
    std::string_view line = detail::next_line(rest);

    // Request line: METHOD SP target SP HTTP/1.x
    std::size_t sp1 = line.find(' ');
    std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
        return fail(400, "malformed request line: expected 'METHOD /path HTTP/1.1'");
    r.req.method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    if (!detail::is_token(r.req.method)) return fail(400, "malformed method");
    if (target.empty() || target.front() != '/') return fail(400, "the request target must start with '/'");
    for (char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return fail(400, "control character in the target");
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
        version[5] > '9' || version[7] < '0' || version[7] > '9')
        return fail(400, "malformed HTTP version");
    if (version[5] != '1') return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
    r.req.minor_version = version[7] - '0';
    std::size_t q = target.find('?');
    r.req.path = target.substr(0, q);
    if (q != std::string_view::npos) r.req.query = target.substr(q + 1);

    // Headers: name ":" value. HTTP/1.1 keeps the connection unless "close";
    // HTTP/1.0 closes it unless "keep-alive".
    bool close = false, keep = false, has_body = false;
    for (line = detail::next_line(rest); !line.empty(); line = detail::next_line(rest)) {
        std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) return fail(400, "malformed header line: no ':'");
        std::string_view name = line.substr(0, colon);
        std::string_view value = detail::trim(line.substr(colon + 1));
        if (!detail::is_token(name)) return fail(400, "malformed header name");
        for (char c : value)
            if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
                return fail(400, "control character in a header value");
        if (detail::iequals(name, "connection")) {
            // A comma-separated list of options.
            while (!value.empty()) {
                std::size_t comma = value.find(',');
                std::string_view opt = detail::trim(value.substr(0, comma));
                if (detail::iequals(opt, "close")) close = true;
                if (detail::iequals(opt, "keep-alive")) keep = true;
                value.remove_prefix(comma == std::string_view::npos ? value.size() : comma + 1);
            }
        } else if (detail::iequals(name, "content-length")) {
            std::uint64_t n = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc{} || end != value.data() + value.size() || value.empty())
                return fail(400, "malformed Content-Length");
            has_body = has_body || n > 0;
        } else if (detail::iequals(name, "transfer-encoding")) {
            has_body = true;
        }
    }
    // Every endpoint is a GET: a body is refused (and the connection closed,
    // since we would have to read past it to find the next request).
    if (has_body) return fail(413, "request bodies are not accepted: every endpoint is a GET");
    r.req.keep_alive = r.req.minor_version >= 1 ? !close : keep && !close;
    return r;
}

/// The value of query parameter `name` as an unsigned integer no larger than
/// `max`, or nothing if it is missing, not a plain decimal number, or too large.
inline std::optional<std::uint64_t> query_uint(std::string_view query, std::string_view name, std::uint64_t max) {
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
        std::size_t eq = pair.find('=');
        if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
        std::string_view v = pair.substr(eq + 1);
        std::uint64_t n = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || n > max) return std::nullopt;
        return n;
    }
    return std::nullopt;
}

/// The reason phrase of the statuses the service answers.
inline std::string_view reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    }
    return "Unknown";
}

/// A complete response with a Content-Length, so keep-alive clients know where it ends.
inline std::string response(int status, std::string_view body, bool keep_alive,
                            std::string_view content_type = "text/plain; charset=utf-8",
                            std::string_view extra_headers = {}) {
    std::string out;
    out.reserve(128 + body.size());
    out += "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    out += reason_phrase(status);
    out += "\r\nContent-Type: ";
    out += content_type;
    out += "\r\nContent-Length: ";
    out += std::to_string(body.size());
    out += keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
    out += extra_headers; // each line ending in \r\n
    out += "\r\n";
    out += body;
    return out;
}

} // namespace http
