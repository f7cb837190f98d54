// offload/process_pool_options.hpp — how a process_pool is configured: the
// start method, the crash policy, resource limits and the options struct,
// used with designated initializers:
//     process_pool pool({.workers = 4, .start = start_method::spawn});
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

namespace offload {

/// How worker processes start.
enum class start_method {
    /// fork() the parent: fastest, but a child of a threaded process inherits
    /// the other threads' locks in whatever state they were.
    fork,
    /// fork + exec of the program itself, re-entering main, where
    /// process_pool::worker_main takes over: a fresh process image.
    spawn,
    /// A small single-threaded server, forked when the pool is created, forks
    /// the workers: later (re)starts never fork the threaded parent.
    forkserver,
};

/// "fork", "spawn" or "forkserver" (for logs and benchmark tables).
constexpr const char* to_string(start_method m) noexcept {
    switch (m) {
    case start_method::fork: return "fork";
    case start_method::spawn: return "spawn";
    case start_method::forkserver: return "forkserver";
    }
    return "?";
}

/// What a worker that dies (signal or exit) while running a call does to the pool.
enum class crash_policy {
    /// The call fails with worker_crashed, and the worker is replaced.
    respawn,
    /// The pool fails everything with broken_executor, as Python's BrokenProcessPool.
    break_pool,
};

/// Resource limits applied with setrlimit in every worker.
struct process_limits {
    /// RLIMIT_CPU: a call that burns more CPU time is killed (SIGXCPU, then SIGKILL): worker_crashed.
    std::optional<std::chrono::seconds> cpu_seconds{};
    /// RLIMIT_AS in bytes: allocations beyond it fail, and std::bad_alloc comes back.
    std::optional<std::size_t> address_space{};
};

/// Options of a process_pool; every field has a default, so `process_pool{}` works.
/// Example: `process_pool pool({.workers = 4, .start = start_method::spawn, .max_tasks_per_child = 100});`
struct process_pool_options {
    /// Worker processes; 0 means max(1, available_cpus() - 1).
    std::size_t workers = 0;
    /// How workers start. forkserver (default) and spawn never fork a threaded parent
    /// after the pool exists; fork is fastest but inherits the parent's threads' locks.
    start_method start = start_method::forkserver;
    /// Replace a worker after this many calls (0 = never).
    std::size_t max_tasks_per_child = 0;
    /// Runs once in every new worker (respawns included), before its first call.
    void (*initializer)() = nullptr;
    /// A call running longer is killed with its worker: timeout_error.
    std::optional<std::chrono::nanoseconds> task_timeout{};
    /// respawn: a dead worker fails only its call and is replaced. break_pool:
    /// the pool fails everything with broken_executor, as Python's BrokenProcessPool.
    crash_policy on_crash = crash_policy::respawn;
    /// Resource limits of every worker.
    process_limits limits{};
    /// Initial size of each worker mailbox; larger payloads grow it (still shared
    /// memory, written in place: one copy in, one copy out). Pages above this
    /// size are given back once a worker has gone a second without a larger message.
    std::size_t shared_memory_threshold = std::size_t(1) << 20;
    /// How much each worker raises its niceness as it starts (setpriority,
    /// like `nice -n`): 0 to 19, else std::invalid_argument. With as many busy
    /// workers as cores, a nice worker yields its core to the parent's loop
    /// as soon as that wakes, instead of at the end of its time slice; it also
    /// yields to every other nice-0 process. See bench_lag.
    int nice = 0;
};

} // namespace offload
