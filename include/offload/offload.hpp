// offload/offload.hpp — the umbrella header: everything offload provides, except
// <offload/mpi_pool.hpp> (it needs MPI: include it and link offload::mpi).
#pragma once

#include <offload/as_completed.hpp>
#include <offload/async_fd.hpp>
#include <offload/available_cpus.hpp>
#include <offload/barrier.hpp>
#include <offload/condition.hpp>
#include <offload/default_executor.hpp>
#include <offload/errors.hpp>
#include <offload/event.hpp>
#include <offload/event_loop.hpp>
#include <offload/executor.hpp>
#include <offload/future.hpp>
#include <offload/gather.hpp>
#include <offload/lag_monitor.hpp>
#include <offload/map.hpp>
#include <offload/metrics.hpp>
#include <offload/mutex.hpp>
#include <offload/outcome.hpp>
#include <offload/process_pool.hpp>
#include <offload/queue.hpp>
#include <offload/run.hpp>
#include <offload/run_coroutine_threadsafe.hpp>
#include <offload/semaphore.hpp>
#include <offload/serialize.hpp>
#include <offload/shared_buffer.hpp>
#include <offload/shield.hpp>
#include <offload/sleep.hpp>
#include <offload/slow_callback.hpp>
#include <offload/stream.hpp>
#include <offload/stream_errors.hpp>
#include <offload/stream_options.hpp>
#include <offload/task.hpp>
#include <offload/task_group.hpp>
#include <offload/task_handle.hpp>
#include <offload/thread_pool.hpp>
#include <offload/timeout.hpp>
#include <offload/to_thread.hpp>
#include <offload/wait.hpp>
#include <offload/wait_for.hpp>

/// \namespace offload
/// Python asyncio's offloading model in C++20: an event loop of coroutine
/// tasks (task, event_loop, run, create_task), timeouts and cancellation
/// (wait_for, timeout, shield), concurrency (gather, wait, as_completed,
/// task_group), coordination (semaphore, mutex, event, condition, barrier,
/// queue), offloading to threads and processes (to_thread, run_in_executor,
/// submit, map, thread_pool, process_pool, mpi_pool), streams, and
/// diagnostics (lag_monitor, executor_stats, metrics). The guide is
/// docs/guide.md; asyncio names side by side are in docs/asyncio.md.
