// offload/errors.hpp — the exception types offload throws. Each what() says
// what happened and what to do. Every type derives from std::exception except
// cancelled_error (see there); timeout_error and cancelled_error are unrelated
// types, so catching one never catches the other. Also: exception_context, what the
// loop's exception handler receives for an error nobody else could catch.
#pragma once

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <sys/types.h>

namespace offload {

/// Thrown at a suspension point of a task that was cancelled.
/// A task may catch it and carry on (as in asyncio), but should usually rethrow.
///
/// It does not derive from std::exception, for the reason Python 3.8 moved
/// CancelledError under BaseException: the everyday
/// `catch (const std::exception&)` of a request handler must not swallow a
/// cancellation and leave running a task that was asked to stop. Only
/// `catch (const cancelled_error&)` or `catch (...)` sees it.
class cancelled_error {
public:
    cancelled_error() = default;
    /// With a message of your own (cancel(message) passes its message here).
    explicit cancelled_error(std::string what) : what_(std::move(what)) {}
    virtual ~cancelled_error() = default;
    /// What happened and what to do.
    virtual const char* what() const noexcept { return what_.c_str(); }

private:
    std::string what_ = "offload::cancelled_error: the task was cancelled at this await "
                        "(task_handle::cancel, wait_for timeout or a failing sibling); "
                        "let it propagate unless you mean to ignore the cancellation";
};

/// Thrown by wait_for (and executors with a task timeout) when the deadline passed.
class timeout_error : public std::exception {
public:
    timeout_error() = default;
    /// With a message of your own instead of the default one.
    explicit timeout_error(std::string what) : what_(std::move(what)) {}
    /// What happened and what to do.
    const char* what() const noexcept override { return what_.c_str(); }

private:
    std::string what_ = "offload::timeout_error: the operation did not finish before its "
                        "deadline and was cancelled; raise the timeout or make the work smaller";
};

/// Thrown when work is submitted to an executor that was shut down, or when a
/// queued call is dropped by shutdown(wait, cancel_pending = true).
class executor_closed : public std::runtime_error {
public:
    /// With the message what() returns.
    explicit executor_closed(const std::string& what) : std::runtime_error(what) {}
};

/// The executor can no longer run work (for example a process pool with
/// crash_policy::break_pool after a worker died). Create a new executor.
class broken_executor : public std::runtime_error {
public:
    /// With the message what() returns.
    explicit broken_executor(const std::string& what) : std::runtime_error(what) {}
};

/// A worker process died while running the task that receives this error.
class worker_crashed : public broken_executor {
public:
    /// The message, and how the worker `pid` ended: killed by `signal`, or exited with `exit_status` (signal 0).
    worker_crashed(const std::string& what, int signal, int exit_status, pid_t pid)
        : broken_executor(what), signal_(signal), exit_status_(exit_status), pid_(pid) {}
    /// The signal that killed the worker, or 0 if it exited.
    int signal() const noexcept { return signal_; }
    /// The worker's exit code when it exited (meaningful when signal() == 0).
    int exit_status() const noexcept { return exit_status_; }
    /// The pid the worker had.
    pid_t pid() const noexcept { return pid_; }

private:
    int signal_;
    int exit_status_;
    pid_t pid_;
};

/// An exception thrown in a worker process whose type has no standard
/// counterpart; carries the original type name and message.
class remote_error : public std::runtime_error {
public:
    /// The worker exception's type name and its what().
    remote_error(std::string type_name, const std::string& message)
        : std::runtime_error(message), type_name_(std::move(type_name)) {}
    /// The (demangled) type name of the exception thrown in the worker.
    const std::string& type_name() const noexcept { return type_name_; }

private:
    std::string type_name_;
};

/// A value could not be encoded or decoded on its way across a process boundary.
class serialization_error : public std::runtime_error {
public:
    /// With the message what() returns.
    explicit serialization_error(const std::string& what) : std::runtime_error(what) {}
};

/// Thrown by a queue after shutdown(): by put() and try_put() at once, by
/// get() and try_get() once the queue is empty (at once after
/// shutdown(true)). asyncio.QueueShutDown.
class queue_shut_down : public std::runtime_error {
public:
    queue_shut_down()
        : std::runtime_error("offload::queue_shut_down: the queue was shut down (queue::shutdown); no item can be put "
                             "any more, and none is left to get; stop producing, and let consumers end their loop "
                             "on this error") {}
    /// With a message of your own instead of the default one.
    explicit queue_shut_down(const std::string& what) : std::runtime_error(what) {}
};

/// Thrown by barrier::wait() when the barrier is broken (barrier::abort()) or
/// reset (barrier::reset()) while the task waits, and by every wait() on a
/// broken barrier. asyncio.BrokenBarrierError.
class broken_barrier_error : public std::runtime_error {
public:
    broken_barrier_error()
        : std::runtime_error("offload::broken_barrier_error: the barrier was aborted or reset while tasks waited at "
                             "it; call barrier::reset() to use it again, or treat the group's work as failed") {}
    /// With a message of your own instead of the default one.
    explicit broken_barrier_error(const std::string& what) : std::runtime_error(what) {}
};

/// What the loop's exception handler receives: an error no one else could catch
/// (an exception thrown by a callback, or by a task whose result nobody retrieved).
struct exception_context {
    /// What the loop was doing ("exception in callback", ...).
    std::string message;
    /// The error itself.
    std::exception_ptr exception;
    /// The task's name; empty for a plain callback.
    std::string task_name;
};

/// The loop's sink for errors nobody caught (event_loop::set_exception_handler).
using exception_handler = std::function<void(const exception_context&)>;

} // namespace offload
