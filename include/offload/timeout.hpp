// offload/timeout.hpp — timeout(d) / timeout_at(t), asyncio.timeout: one
// deadline for a whole block of awaits, running in the caller's own task.
// At the deadline the task is cancelled (a counted request, task_context.hpp);
// when the block ends, the scope takes its request back and turns the
// cancelled_error into timeout_error, unless somebody else asked the task to
// stop too: then the cancellation goes on (nested timeouts on one deadline:
// only the outermost reports the timeout).
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/timer_heap.hpp>
#include <offload/detail/base/type_traits.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/task_context.hpp>
#include <offload/detail/tasks/awaitable_traits.hpp>
#include <offload/errors.hpp>
#include <offload/task.hpp>

#include <fmt/core.h>

#include <chrono>
#include <exception>
#include <optional>
#include <source_location>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace offload {

/// A deadline for a block of awaits (asyncio.timeout). Make one with
/// timeout(d) or timeout_at(t), then `co_await scope.run(block)`: `block` (a
/// task<T> or any awaitable) runs in the calling task, and run() gives its
/// result, or throws timeout_error if the deadline passed inside it. The
/// block may move the deadline with reschedule() (it captures the scope by
/// reference; the scope outlives the run), and expired() tells afterwards
/// whether the deadline was what stopped it.
///
/// A deadline already passed when run() starts throws timeout_error without
/// starting the block. A scope runs one block.
///
/// Thread safety: loop-local. Cancellation: a cancellation of the task from
/// elsewhere passes through as cancelled_error, also when it arrives together
/// with the deadline.
/// Example:
/// ```
/// auto scope = offload::timeout(2s);
/// auto page = co_await scope.run([&]() -> task<std::string> {
///     auto conn = co_await connect(host);
///     scope.reschedule(std::chrono::steady_clock::now() + 10s); // connected: allow the transfer more
///     co_return co_await conn.read_all();
/// }());
/// ```
class timeout_scope {
public:
    /// The clock of deadlines (the loop's).
    using clock = std::chrono::steady_clock;

    /// A scope with deadline `when` (none: no deadline until rescheduled).
    explicit timeout_scope(std::optional<clock::time_point> when) noexcept : when_(when) { timer_.owner = this; }
    timeout_scope(const timeout_scope&) = delete;
    timeout_scope& operator=(const timeout_scope&) = delete;
    ~timeout_scope() { disarm(); }

    /// The deadline, if any.
    std::optional<clock::time_point> when() const noexcept { return when_; }

    /// True once the deadline passed while the block ran (even if the block
    /// then finished normally, or was stopped by another cancellation too).
    bool expired() const noexcept { return state_ == state::expiring || state_ == state::expired; }

    /// Moves the deadline (std::nullopt: none). A deadline already passed
    /// cancels the block at once. std::logic_error once the deadline expired
    /// or the block ended.
    void reschedule(std::optional<clock::time_point> when) {
        if (state_ == state::expiring || state_ == state::expired || state_ == state::exited)
            throw std::logic_error("offload: timeout_scope::reschedule after its deadline expired or its block "
                                   "ended; make a new scope with offload::timeout(d)");
        when_ = when;
        if (state_ == state::entered) arm();
    }

    /// Runs `block` in the calling task under this deadline: its result, or
    /// timeout_error when the deadline passed inside it.
    template <class A>
        requires detail::awaitable<A>
    task<detail::await_result_t<A>> run(A block, std::source_location loc = std::source_location::current()) {
        using T = detail::await_result_t<A>;
        enter(loc);
        std::optional<detail::value_or_monostate_t<T>> result;
        std::exception_ptr error;
        bool cancelled = false;
        try {
            if constexpr (std::is_void_v<T>)
                co_await std::move(block);
            else
                result.emplace(co_await std::move(block));
        } catch (const cancelled_error&) {
            cancelled = true;
            error = std::current_exception();
        } catch (...) {
            error = std::current_exception();
        }
        if (leave() && cancelled) throw timeout_error(message("stopped the block"));
        if (error) std::rethrow_exception(error);
        if constexpr (!std::is_void_v<T>) co_return std::move(*result);
    }

private:
    enum class state { created, entered, expiring, expired, exited };

    struct timer final : detail::timer_node {
        timeout_scope* owner = nullptr;
        void fire() override { owner->on_deadline(); }
    };

    void enter(std::source_location loc) {
        detail::loop_core& l = detail::loop_core::require_current("timeout_scope::run");
        if (!detail::tls.ctx)
            throw std::logic_error("offload: timeout_scope::run outside a task; co_await it from a task "
                                   "(offload::run or create_task)");
        if (state_ != state::created)
            throw std::logic_error("offload: this timeout_scope already ran a block; make a new scope with "
                                   "offload::timeout(d) for each block");
        loop_ = &l;
        ctx_ = detail::tls.ctx;
        where_ = loc;
        if (when_ && *when_ <= clock::now()) {
            state_ = state::expired;
            throw timeout_error(message("had already passed, so the block was not started"));
        }
        state_ = state::entered;
        requests_at_entry_ = ctx_->cancel_requests;
        arm();
    }

    /// Ends the block; true if the cancellation it ended with is ours to turn into timeout_error.
    bool leave() noexcept {
        disarm();
        if (state_ != state::expiring) {
            state_ = state::exited;
            return false;
        }
        state_ = state::expired;
        // Take our request back; if more remain than at entry, someone else
        // wants this task stopped as well, and the cancellation goes on.
        return ctx_->uncancel() <= requests_at_entry_;
    }

    void arm() {
        disarm();
        if (!when_) return;
        timer_.deadline = *when_;
        loop_->add_timer(&timer_);
    }
    void disarm() noexcept {
        if (timer_.queued()) loop_->remove_timer(&timer_);
    }
    void on_deadline() noexcept {
        state_ = state::expiring;
        ctx_->request_cancel();
    }

    std::string message(const char* what) const {
        return fmt::format("offload::timeout_error: the deadline of the timeout block at {}:{} {}; allow more time "
                           "(timeout(d), reschedule()) or make the work smaller",
                           where_.file_name(), where_.line(), what);
    }

    std::optional<clock::time_point> when_;
    state state_ = state::created;
    timer timer_;
    detail::loop_core* loop_ = nullptr;
    detail::task_context* ctx_ = nullptr;
    unsigned requests_at_entry_ = 0;
    std::source_location where_{};
};

/// A timeout_scope whose deadline is `delay` from now (asyncio.timeout).
/// Example: `co_await offload::timeout(2s).run(fetch(url));`
template <class Rep, class Period>
timeout_scope timeout(std::chrono::duration<Rep, Period> delay) {
    const auto d = std::chrono::ceil<timeout_scope::clock::duration>(delay);
    const auto now = timeout_scope::clock::now();
    if (d > timeout_scope::clock::time_point::max() - now) return timeout_scope(std::nullopt); // no limit
    return timeout_scope(d <= d.zero() ? now : now + d);
}

/// A timeout_scope with the absolute deadline `when` (std::nullopt: none until
/// rescheduled), as asyncio.timeout_at.
inline timeout_scope timeout_at(std::optional<timeout_scope::clock::time_point> when) { return timeout_scope(when); }

} // namespace offload
