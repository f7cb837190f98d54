// offload/slow_callback.hpp — what the loop reports in debug mode when one
// step (a callback, or a task running from one await to the next) holds the
// loop thread longer than slow_callback_duration. Modelled on asyncio's
// slow-callback warning and seastar's stall detector: a threshold and an
// injectable sink, so tests can count reports.
#pragma once

#include <offload/detail/base/config.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

#include <chrono>
#include <cstdio>
#include <functional>
#include <source_location>
#include <string>

namespace offload {

/// One step that held the loop too long.
struct slow_callback_report {
    /// The name given to create_task (or "<callback>" for a plain callback).
    std::string task_name;
    /// How long the step held the loop thread.
    std::chrono::nanoseconds duration{};
    /// The await the task resumed from (default-constructed for a plain callback).
    std::source_location resumed_at{};
    /// The await where the task suspended next (default-constructed if it finished).
    std::source_location suspended_at{};
};

using slow_callback_handler = std::function<void(const slow_callback_report&)>;

/// Formats a report as one line: "offload: slow step in task 'x' took 150.3 ms; resumed at a.cpp:12, suspended at
/// a.cpp:20".
OFFLOAD_DECL std::string format_slow_callback(const slow_callback_report& r);

namespace detail {
OFFLOAD_DECL void default_slow_callback_handler(const slow_callback_report& r);
#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void default_slow_callback_handler(const slow_callback_report& r) {
    std::string line = format_slow_callback(r);
    std::fprintf(stderr, "%s\n", line.c_str());
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace detail

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL std::string format_slow_callback(const slow_callback_report& r) {
    auto where = [](const std::source_location& l) -> std::string {
        if (l.line() == 0) return "<none>";
        return fmt::format("{}:{} ({})", l.file_name(), l.line(), l.function_name());
    };
    return fmt::format("offload: slow step in task '{}' held the loop for {:.1f} ms; resumed at {}, suspended at {}. "
                       "Offload blocking or CPU-heavy work with offload::to_thread / run_in_executor",
                       r.task_name, std::chrono::duration<double, std::milli>(r.duration).count(), where(r.resumed_at),
                       where(r.suspended_at));
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload
