// offload/outcome.hpp — outcome<T>: the settled result of one operation,
// either a value or the exception it ended with. gather(return_exceptions, ...)
// returns one per child (asyncio.gather(..., return_exceptions=True) puts the
// exception objects in its result list; C++ keeps them as std::exception_ptr).
#pragma once

#include <offload/errors.hpp>

#include <exception>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

namespace offload {

/// A value of type T, or the exception an operation ended with.
///
/// Built by gather(return_exceptions, ...): a child that returned gives an
/// outcome holding its value, a child that threw (or was cancelled: then the
/// error is a cancelled_error) gives one holding its exception. A `void`
/// child gives outcome<std::monostate>, following the library's one rule for
/// stored `void` results (plain gather also yields std::monostate);
/// outcome<void> is not a valid type.
///
/// Thread safety: a plain value type (like std::optional).
/// Example:
/// ```
/// auto [a, b] = co_await gather(return_exceptions, fetch(1), fetch(2));
/// if (a.has_value()) use(a.value());
/// else if (!a.cancelled()) log(a.error());
/// ```
template <class T>
class outcome {
    static_assert(!std::is_void_v<T>, "offload::outcome<void> is not a type: a void result is stored as "
                                      "std::monostate, use outcome<std::monostate>");
    static_assert(!std::is_reference_v<T>, "offload::outcome<T&> is not supported: store a value or a pointer");

public:
    /// The type of the value.
    using value_type = T;

    /// An outcome holding a value constructed from `args`.
    template <class... Args>
        requires std::is_constructible_v<T, Args&&...>
    explicit outcome(std::in_place_t, Args&&... args) : v_(std::in_place_index<0>, std::forward<Args>(args)...) {}

    /// An outcome holding the exception `e`. Throws std::invalid_argument if `e` is null.
    explicit outcome(std::exception_ptr e) : v_(std::in_place_index<1>, std::move(e)) {
        if (!std::get<1>(v_))
            throw std::invalid_argument("offload::outcome: constructed from a null exception_ptr; pass the "
                                        "exception the operation ended with, or use std::in_place and a value");
    }

    /// True if it holds a value.
    bool has_value() const noexcept { return v_.index() == 0; }
    /// has_value().
    explicit operator bool() const noexcept { return has_value(); }

    /// The value; rethrows the held exception if there is no value.
    T& value() & {
        throw_if_error();
        return std::get<0>(v_);
    }
    /// The value, read-only; rethrows the held exception if there is no value.
    const T& value() const& {
        throw_if_error();
        return std::get<0>(v_);
    }
    /// The value moved out; rethrows the held exception if there is no value.
    T&& value() && {
        throw_if_error();
        return std::get<0>(std::move(v_));
    }

    /// The held exception, or a null exception_ptr if it holds a value.
    std::exception_ptr error() const noexcept { return has_value() ? nullptr : std::get<1>(v_); }

    /// True if the held exception is a cancelled_error (the operation was cancelled).
    bool cancelled() const noexcept {
        if (has_value()) return false;
        try {
            std::rethrow_exception(std::get<1>(v_));
        } catch (const cancelled_error&) {
            return true;
        } catch (...) {
            return false;
        }
    }

private:
    void throw_if_error() const {
        if (!has_value()) std::rethrow_exception(std::get<1>(v_));
    }

    std::variant<T, std::exception_ptr> v_; // index 0: value, 1: error (by index, so T may be exception_ptr)
};

} // namespace offload
