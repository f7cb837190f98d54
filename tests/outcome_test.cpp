// Tests of outcome<T>: a value or an exception, value() rethrows, error(),
// cancelled(), move-only values, and the null exception_ptr it refuses.
#include <offload/outcome.hpp>

#include <catch2/catch.hpp>

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

using namespace offload;

TEST_CASE("outcome: a value is held, returned and has no error", "[outcome]") {
    outcome<std::string> o(std::in_place, "hello");
    CHECK(o.has_value());
    CHECK(static_cast<bool>(o));
    CHECK(o.value() == "hello");
    CHECK(o.error() == nullptr);
    CHECK_FALSE(o.cancelled());
    o.value() += "!";
    CHECK(std::as_const(o).value() == "hello!");
}

TEST_CASE("outcome: an error is held, value() rethrows it, error() gives it back", "[outcome]") {
    outcome<int> o(std::make_exception_ptr(std::out_of_range("index 7")));
    CHECK_FALSE(o.has_value());
    CHECK_FALSE(static_cast<bool>(o));
    REQUIRE(o.error() != nullptr);
    CHECK_THROWS_AS(o.value(), std::out_of_range);
    CHECK_THROWS_WITH(std::as_const(o).value(), "index 7");
    CHECK_THROWS_AS(std::rethrow_exception(o.error()), std::out_of_range);
    CHECK_FALSE(o.cancelled());
}

TEST_CASE("outcome: cancelled() is true only for a cancelled_error", "[outcome]") {
    outcome<int> c(std::make_exception_ptr(cancelled_error()));
    CHECK(c.cancelled());
    CHECK_THROWS_AS(c.value(), cancelled_error);
    outcome<int> t(std::make_exception_ptr(timeout_error()));
    CHECK_FALSE(t.cancelled());
}

TEST_CASE("outcome: a move-only value can be moved out", "[outcome]") {
    outcome<std::unique_ptr<int>> o(std::in_place, std::make_unique<int>(5));
    std::unique_ptr<int> p = std::move(o).value();
    REQUIRE(p);
    CHECK(*p == 5);
    static_assert(!std::is_copy_constructible_v<outcome<std::unique_ptr<int>>>);
    static_assert(std::is_move_constructible_v<outcome<std::unique_ptr<int>>>);
}

TEST_CASE("outcome: the void stand-in is std::monostate", "[outcome]") {
    outcome<std::monostate> o(std::in_place);
    CHECK(o.has_value());
    CHECK(o.value() == std::monostate{});
}

TEST_CASE("outcome: T may itself be an exception_ptr (the slots are told apart by position)", "[outcome]") {
    outcome<std::exception_ptr> v(std::in_place, std::make_exception_ptr(std::logic_error("as data")));
    CHECK(v.has_value());
    CHECK(v.error() == nullptr);
    CHECK_THROWS_AS(std::rethrow_exception(v.value()), std::logic_error);
}

TEST_CASE("outcome: a null exception_ptr is refused with a clear message", "[outcome]") {
    CHECK_THROWS_AS(outcome<int>(std::exception_ptr()), std::invalid_argument);
    CHECK_THROWS_WITH(outcome<int>(std::exception_ptr()), Catch::Contains("null exception_ptr"));
}
