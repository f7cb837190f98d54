// offload/mpi_pool_options.hpp — how an mpi_pool is configured: the local
// process pool each worker rank runs (its size and the process-pool options
// forwarded to it), how many calls each rank may hold at once, and how long
// rank 0 waits for the ranks at the handshake. Used with designated initializers:
//     mpi_pool pool({.local_workers = 8, .task_timeout = 30s});
#pragma once

#include <offload/process_pool_options.hpp>

#include <chrono>
#include <cstddef>
#include <optional>

namespace offload {

/// Options of an mpi_pool: the size of each rank's local process pool, flow
/// control, and the process-pool options forwarded to every rank.
/// Example: `offload::mpi_pool pool({.local_workers = 4, .task_timeout = 30s});`
struct mpi_pool_options {
    /// Worker processes of the local process_pool on each worker rank; 0 means
    /// that rank's available_cpus() (each rank counts its own cores).
    std::size_t local_workers = 0;
    /// Calls sent to one rank and not yet answered, at most; 0 means four per
    /// local worker, at least 8 (enough that the rank never waits for rank 0
    /// between calls; bench_mpi). Further calls wait on rank 0 (cancelling one
    /// there means it never runs anywhere).
    std::size_t max_in_flight_per_rank = 0;
    /// Start method of the local pools (forwarded).
    start_method start = start_method::forkserver;
    /// Replace a local worker process after this many calls (0 = never; forwarded).
    std::size_t max_tasks_per_child = 0;
    /// Runs once in every new local worker process (forwarded; the same binary
    /// runs on every rank, so the function is found there).
    void (*initializer)() = nullptr;
    /// A call running longer is killed with its worker process on its rank: timeout_error.
    std::optional<std::chrono::nanoseconds> task_timeout{};
    /// What a dead local worker does to that rank's pool (forwarded): respawn
    /// fails only its call (worker_crashed naming rank and host); break_pool
    /// fails the calls of that rank with broken_executor.
    crash_policy on_crash = crash_policy::respawn;
    /// Resource limits of every local worker process (forwarded).
    process_limits limits{};
    /// Niceness increment of every local worker process, 0 to 19 (forwarded).
    int nice = 0;
    /// How long rank 0 waits for every rank to answer the handshake before it
    /// throws (a rank that never called mpi_pool::worker_main, or hangs).
    std::chrono::milliseconds handshake_timeout{10'000};
};

} // namespace offload
