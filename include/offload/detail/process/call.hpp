// offload/detail/process/call.hpp — one process-pool call as the pool sees
// it: the awaiter itself (a waiter the pool resumes), linked into the pool's
// queue while it waits for a worker, with the type-erased encode and decode
// of its arguments and result. The typed awaiter is in call_awaiter.hpp.
#pragma once

#include <offload/codec.hpp>
#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/loop/waiter.hpp>

#include <exception>
#include <source_location>

namespace offload::detail {

class worker_process;
struct process_call;

/// What a process_call needs from its pool (the pool core implements it).
struct process_call_owner {
    /// The call's task was cancelled: drop it if queued, kill its worker if running.
    virtual void cancel_call(process_call* c) noexcept = 0;
    /// The awaiter goes away while the call is out: nobody waits for it any more.
    virtual void detach_call(process_call* c) noexcept = 0;

protected:
    ~process_call_owner() = default;
};

struct process_call : waiter, list_hook {
    enum class phase { idle, queued, running, done };
    /// Why a call that did not return ended, when the pool caused it.
    enum class fate { none, cancelled, timed_out };

    explicit process_call(std::source_location loc) : waiter(loc) {}
    process_call(const process_call&) = delete;
    process_call& operator=(const process_call&) = delete;

    /// Encodes the trampoline, the callable and the arguments, in place.
    virtual void encode_request(byte_writer& w) = 0;
    /// Decodes the result out of the worker's mailbox.
    virtual void decode_result(byte_reader& r) = 0;

    process_call_owner* pool = nullptr;
    worker_process* worker = nullptr;
    clock::time_point enqueued{};
    phase ph = phase::idle;
    fate end = fate::none;
    std::exception_ptr error;

    void cancel() noexcept override { pool->cancel_call(this); }

protected:
    ~process_call() {
        if (pool) pool->detach_call(this);
    }
};

} // namespace offload::detail
