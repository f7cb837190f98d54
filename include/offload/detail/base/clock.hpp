// offload/detail/base/clock.hpp — the one clock of the library: timers,
// deadlines, latency histograms and spin budgets all read steady_clock.
#pragma once

#include <chrono>

namespace offload::detail {

using clock = std::chrono::steady_clock;

} // namespace offload::detail
