// offload/detail/base/env.hpp — the environment switches the library reads:
// OFFLOAD_DEBUG turns on debug mode for every loop (and the process pool's
// fork warning), like PYTHONASYNCIODEBUG does for asyncio.
#pragma once

#include <cstdlib>
#include <cstring>

namespace offload::detail {

/// True when OFFLOAD_DEBUG is set to anything but "" or "0".
inline bool debug_env_enabled() noexcept {
    const char* d = std::getenv("OFFLOAD_DEBUG");
    return d && *d && std::strcmp(d, "0") != 0;
}

} // namespace offload::detail
