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
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <source_location>
#include <string>
#include <vector>

namespace offload {

/// One step that held the loop too long.
struct slow_callback_report {
    /// The name given to create_task (or "<callback>" for a plain callback).
    std::string task_name;
    /// How long the step held the loop thread.
    std::chrono::nanoseconds duration{};
    /// The await the task resumed from (default-constructed for a plain callback).
    std::source_location resumed_at{};
    /// The await where the task suspended next (default-constructed if it finished,
    /// and for an ongoing report: the step has not suspended yet).
    std::source_location suspended_at{};
    /// The loop thread's call stack while the step ran, innermost first, one
    /// symbolized frame each ("blocking_function(int)+0x1f"; a function of the
    /// executable is named only when it is exported, e.g. linked with -rdynamic).
    /// Filled in ongoing reports only; empty in the end-of-step report.
    std::vector<std::string> backtrace;
    /// True for a report made while the step is still running (at 1x, 2x, 4x...
    /// the threshold); false for the one report made when a slow step ends.
    bool ongoing = false;
    /// Reports dropped by the rate limit since the previous report delivered.
    std::uint64_t suppressed = 0;
};

/// How debug mode reports slow steps (event_loop::set_stall_report_options).
/// Like seastar's stall detector: a step still running past the threshold is
/// reported while it runs, with the loop thread's backtrace, again at 2x, 4x,
/// 8x... the threshold, and once more when it ends; reports are rate-limited.
struct stall_report_options {
    /// At most this many reports (ongoing and end-of-step alike) per `window`;
    /// the ones over it are dropped and counted in the next report's
    /// `.suppressed`. 0: no limit.
    std::size_t max_reports = 5;
    /// The rate limit's window.
    std::chrono::nanoseconds window = std::chrono::minutes(1);
    /// Report a step while it still runs (false: only when it ends).
    bool while_running = true;
    /// Capture the loop thread's backtrace for ongoing reports. This interrupts
    /// the loop thread with `signal` (installed once per process with
    /// SA_RESTART; a system call it was in restarts or returns EINTR as for any
    /// signal, which offload's own waits retry).
    bool backtrace = true;
    /// The real-time signal used to interrupt the loop thread; 0: SIGRTMIN + 6.
    /// If the program already has a handler for it, offload leaves that handler
    /// alone and reports without a backtrace, saying so; choose another here.
    int signal = 0;
};

/// Where debug mode sends slow-step reports (event_loop::set_slow_callback_handler);
/// called on the loop thread at the end of a step, on the watchdog thread for ongoing reports.
using slow_callback_handler = std::function<void(const slow_callback_report&)>;

/// Formats a report: one line, "offload: slow step in task 'x' held the loop for 150.3 ms; resumed at a.cpp:12,
/// suspended at a.cpp:20...", then for an ongoing report one more line per backtrace frame.
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
    const double ms = std::chrono::duration<double, std::milli>(r.duration).count();
    std::string s =
        r.ongoing
            ? fmt::format("offload: slow step in task '{}' has held the loop for {:.1f} ms and is still running; "
                          "resumed at {}",
                          r.task_name, ms, where(r.resumed_at))
            : fmt::format("offload: slow step in task '{}' held the loop for {:.1f} ms; resumed at {}, suspended at {}",
                          r.task_name, ms, where(r.resumed_at), where(r.suspended_at));
    s += ". Offload blocking or CPU-heavy work with offload::to_thread / run_in_executor";
    if (r.suppressed) s += fmt::format(" ({} earlier reports suppressed by the rate limit)", r.suppressed);
    for (std::size_t i = 0; i < r.backtrace.size(); ++i) s += fmt::format("\n  #{} {}", i, r.backtrace[i]);
    return s;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload
