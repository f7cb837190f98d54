// offload/run.hpp — run(task), the entry point (asyncio.run): makes a loop,
// runs the task, cancels whatever it left running and waits for those to
// unwind, then returns the result or rethrows the exception.
#pragma once

#include <offload/detail/base/config.hpp>

#include <offload/event_loop.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <stdexcept>
#include <vector>

namespace offload {

namespace detail {
// Cancels every unfinished task of `loop` and runs the loop until they end.
OFFLOAD_DECL void cancel_leftovers(event_loop& loop);
#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void cancel_leftovers(event_loop& loop) {
    for (;;) {
        std::vector<task_record*> left;
        core_of(loop).tasks().for_each([&](task_record* t) {
            if (!t->done) {
                t->retain();
                left.push_back(t);
            }
        });
        if (left.empty()) return;
        for (auto* t : left) t->request_cancel();
        loop.run_until_complete([](std::vector<task_record*> tasks) -> task<> {
            for (auto* t : tasks) co_await done_awaiter(static_cast<task_state_base*>(t), {});
        }(left));
        for (auto* t : left) t->release();
    }
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace detail

/// Runs `t` on a new event loop and returns its result (asyncio.run).
/// Throws std::logic_error if a loop already runs on this thread.
/// Example: `int main() { return offload::run(amain()); }`
template <class T>
T run(task<T> t) {
    if (event_loop::current_or_null())
        throw std::logic_error("offload::run() was called while an event loop is running on this thread; "
                               "inside a coroutine, co_await the task (or create_task it) instead");
    event_loop loop;
    struct cleanup {
        event_loop& l;
        ~cleanup() {
            try {
                detail::cancel_leftovers(l);
            } catch (...) {
            }
        }
    } c{loop};
    return loop.run_until_complete(std::move(t));
}

} // namespace offload
