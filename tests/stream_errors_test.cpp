// stream_errors_test.cpp — the stream error types: one base to catch them all,
// the errno kept where a syscall failed, and the data each carries.
#include <offload/stream_errors.hpp>

#include <catch2/catch.hpp>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

using namespace offload;

TEST_CASE("every stream error is a stream_error and a std::exception", "[stream_errors]") {
    auto code = std::error_code(ECONNREFUSED, std::generic_category());
    try {
        throw connection_error("offload: connection refused to 127.0.0.1:1", code);
    } catch (const stream_error& e) {
        CHECK(std::string(e.what()) == "offload: connection refused to 127.0.0.1:1");
        CHECK(e.code() == std::errc::connection_refused);
    }
    try {
        throw connection_reset_error("offload: connection reset by 127.0.0.1:80",
                                     std::error_code(ECONNRESET, std::generic_category()));
    } catch (const std::exception& e) {
        CHECK(dynamic_cast<const stream_error*>(&e) != nullptr);
        CHECK(dynamic_cast<const connection_error*>(&e) == nullptr); // distinct types
    }
    CHECK_FALSE(stream_error("no syscall").code()); // no errno: an empty code
}

TEST_CASE("incomplete_read_error carries the partial bytes and the size asked for", "[stream_errors]") {
    try {
        throw incomplete_read_error("offload: 3 of 8 bytes before end of file", std::string("a\0b", 3), 8);
    } catch (const stream_error& e) {
        auto& ire = dynamic_cast<const incomplete_read_error&>(e);
        CHECK(ire.partial() == std::string("a\0b", 3)); // bytes, NUL included
        CHECK(ire.expected() == 8);
        CHECK_FALSE(ire.code());
    }
}

TEST_CASE("limit_overrun_error says how many buffered bytes were searched", "[stream_errors]") {
    limit_overrun_error e("offload: no delimiter within 16 bytes", 16);
    CHECK(e.consumed() == 16);
    CHECK(std::string(e.what()).find("16") != std::string::npos);
    const std::runtime_error& base = e;
    CHECK(std::string(base.what()) == e.what());
}
