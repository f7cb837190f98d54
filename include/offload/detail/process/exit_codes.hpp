// offload/detail/process/exit_codes.hpp — the exit statuses a worker (or the
// forkserver) uses to tell the pool why it stopped before doing any work.
// They are a protocol between processes, so they have names here and are
// matched by name in the pool, never as bare numbers.
#pragma once

namespace offload::detail::exit_code {

/// The parent died before the child could arm PR_SET_PDEATHSIG.
inline constexpr int parent_gone = 1;
/// The forkserver's poll() failed.
inline constexpr int forkserver_poll_failed = 2;
/// A worker hit an unrecoverable error (its message is on stderr).
inline constexpr int worker_fatal = 70;
/// The pool's initializer threw in a new worker (its message is on stderr).
inline constexpr int initializer_threw = 72;
/// A spawned worker could not place its descriptors before exec.
inline constexpr int spawn_setup_failed = 126;
/// exec of /proc/self/exe failed in a spawned worker.
inline constexpr int exec_failed = 127;

} // namespace offload::detail::exit_code
