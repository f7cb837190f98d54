// offload/detail/base/type_traits.hpp — the one rule for `void` results:
// wherever a result is stored (a task's state, an offloaded call, a tuple or
// vector of gather) a `void` result is std::monostate.
#pragma once

#include <type_traits>
#include <variant>

namespace offload::detail {

/// T, or std::monostate for void.
template <class T>
using value_or_monostate_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

} // namespace offload::detail
