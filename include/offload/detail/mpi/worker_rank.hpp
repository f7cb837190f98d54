// offload/detail/mpi/worker_rank.hpp — what a worker rank (1..N-1) of an
// mpi_pool runs inside mpi_pool::worker_main: the handshake (same build as
// rank 0?), then an event loop that runs every call it receives in a local
// process_pool, as one task per call, and sends the outcome back. A call
// arrives already encoded the way the process pool's workers read it, so it
// is handed to the local pool as raw bytes (raw_call) and its result bytes
// go back as they are: nothing is decoded or encoded again on the way.
// Cancelling a call cancels its task, which the local pool answers by
// dropping it (queued) or killing its worker process (running).
#pragma once

#include <offload/detail/mpi/protocol.hpp>
#include <offload/detail/mpi/runtime.hpp>
#include <offload/detail/process/call.hpp>
#include <offload/event.hpp>
#include <offload/event_loop.hpp>
#include <offload/process_pool.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

namespace offload::detail {

/// A call that is already encoded: its bytes go to a local worker as they
/// are, and the result's bytes come back as they are.
class raw_call final : public process_call {
public:
    raw_call(process_pool_core& pool, std::span<const std::byte> request)
        : process_call(std::source_location::current()), pool_(&pool), request_(request) {}

    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> h) {
        if (!arm(h)) return false;
        try {
            pool_->submit(this);
        } catch (...) {
            disarm();
            throw;
        }
        return true;
    }
    std::vector<std::byte> await_resume() {
        throw_if_cancelled();
        if (error) std::rethrow_exception(error);
        return std::move(result_);
    }

    void encode_request(byte_writer& w) override { w.write_bytes(request_.data(), request_.size()); }
    void decode_result(byte_reader& r) override {
        auto s = r.read_span(r.remaining(), "result");
        result_.assign(s.begin(), s.end());
    }

private:
    process_pool_core* pool_;
    std::span<const std::byte> request_;
    std::vector<std::byte> result_;
};

/// Messages from the MPI thread, handed to the worker rank's loop.
struct rank_inbox {
    std::mutex mu;
    std::condition_variable cv; // before the loop runs (the handshake)
    std::vector<mpi_message> msgs;
    event_loop* loop = nullptr;
    event* ready = nullptr; // set on the loop when messages wait
    bool posted = false;

    void push(mpi_message&& m) {
        std::lock_guard lk(mu);
        msgs.push_back(std::move(m));
        cv.notify_one();
        if (loop && ready && !posted) {
            posted = true;
            loop->call_soon_threadsafe([this] {
                event* r;
                {
                    std::lock_guard lk2(mu);
                    posted = false;
                    r = ready; // null once serve_rank has returned
                }
                if (r) r->set();
            });
        }
    }
    std::vector<mpi_message> take() {
        std::lock_guard lk(mu);
        return std::exchange(msgs, {});
    }
};

inline task<> run_rank_call(process_pool& pool, mpi_runtime& rt, std::uint64_t id, std::vector<std::byte> msg) {
    byte_writer payload;
    mpi_outcome outcome = mpi_outcome::value;
    std::vector<std::byte> result;
    try {
        raw_call call(core_of(pool), std::span<const std::byte>(msg).subspan(sizeof(std::uint64_t)));
        result = co_await call;
    } catch (...) {
        outcome = encode_rank_error(payload);
    }
    executor_stats s = pool.stats();
    byte_writer out(64 + result.size() + payload.size());
    encode_result_header(out, id, outcome, {s.crashes, s.respawns, s.kills});
    if (outcome == mpi_outcome::value)
        out.write_bytes(result.data(), result.size());
    else
        out.write_bytes(payload.bytes().data(), payload.size());
    rt.send(0, tag_result, out.take_bytes());
}

inline task<> serve_rank(process_pool& pool, mpi_runtime& rt, rank_inbox& in) {
    event ready;
    {
        std::lock_guard lk(in.mu);
        in.ready = &ready;
        if (!in.msgs.empty()) ready.set();
    }
    std::unordered_map<std::uint64_t, task_handle<void>> running;
    for (;;) {
        co_await ready.wait();
        ready.clear();
        std::erase_if(running, [](const auto& p) { return p.second.done(); });
        bool stop = false;
        for (auto& m : in.take()) {
            if (m.source != 0) continue;
            if (m.tag == tag_call) {
                byte_reader r(m.data);
                std::uint64_t id = codec<std::uint64_t>::decode(r);
                running.emplace(id, create_task(run_rank_call(pool, rt, id, std::move(m.data))));
            } else if (m.tag == tag_cancel) {
                byte_reader r(m.data);
                auto it = running.find(codec<std::uint64_t>::decode(r));
                if (it != running.end() && !it->second.done()) it->second.cancel();
            } else if (m.tag == tag_stop) {
                stop = true;
            }
        }
        if (stop) break;
    }
    // Rank 0 sends stop once every call it sent has answered: nothing runs here.
    for (auto& [id, h] : running) co_await h;
    {
        std::lock_guard lk(in.mu);
        in.ready = nullptr;
    }
}

/// Serves rank 0 until it shuts the pool down. Returns the exit code.
inline int run_worker_rank(mpi_runtime& rt) {
    rank_inbox in;
    rt.set_handler([&in](mpi_message&& m) { in.push(std::move(m)); });
    mpi_message first;
    {
        std::unique_lock lk(in.mu);
        in.cv.wait(lk, [&] {
            for (auto& m : in.msgs)
                if (m.source == 0 && (m.tag == tag_hello || m.tag == tag_bye)) return true;
            return false;
        });
        auto it = std::find_if(in.msgs.begin(), in.msgs.end(),
                               [](auto& m) { return m.source == 0 && (m.tag == tag_hello || m.tag == tag_bye); });
        first = std::move(*it);
        in.msgs.erase(it);
    }
    if (first.tag == tag_bye) {
        rt.set_handler(nullptr);
        return 0;
    }
    mpi_hello_reply reply{mpi_hello_reply::ok, rt.host(), 0, ::getpid(), program_build_id(), {}};
    std::optional<process_pool> pool;
    mpi_hello hello;
    try {
        byte_reader r(first.data);
        std::uint64_t theirs = codec<std::uint64_t>::decode(r);
        if (theirs != reply.build_id) {
            reply.st = mpi_hello_reply::build_mismatch;
        } else {
            r = byte_reader(first.data);
            hello = decode_hello(r);
            const auto& o = hello.opts;
            pool.emplace(process_pool_options{.workers = o.local_workers ? o.local_workers : available_cpus(),
                                              .start = o.start,
                                              .max_tasks_per_child = o.max_tasks_per_child,
                                              .initializer = o.initializer,
                                              .task_timeout = o.task_timeout,
                                              .on_crash = o.on_crash,
                                              .limits = o.limits,
                                              .nice = o.nice});
            reply.workers = pool->workers();
        }
    } catch (const std::exception& e) {
        reply.st = mpi_hello_reply::pool_failed;
        reply.detail = e.what();
    }
    {
        byte_writer w;
        encode_hello_reply(w, reply);
        rt.send(0, tag_hello_reply, w.take_bytes());
    }
    if (reply.st != mpi_hello_reply::ok) {
        std::fprintf(stderr, "offload::mpi_pool: rank %d (host %s) cannot serve: %s\n", rt.rank(), rt.host().c_str(),
                     reply.st == mpi_hello_reply::build_mismatch ? "it runs a different build than rank 0"
                                                                 : reply.detail.c_str());
        rt.set_handler(nullptr);
        return 1;
    }
    {
        event_loop loop;
        {
            std::lock_guard lk(in.mu);
            in.loop = &loop;
        }
        loop.run_until_complete(serve_rank(*pool, rt, in));
        std::lock_guard lk(in.mu);
        in.loop = nullptr;
    } // the loop lets go of the pool, which then shuts down on this thread
    pool->shutdown(true, true);
    executor_stats s = pool->stats();
    byte_writer w;
    encode_result_header(w, 0, mpi_outcome::value, {s.crashes, s.respawns, s.kills});
    rt.send(0, tag_stop_ack, w.take_bytes());
    rt.set_handler(nullptr);
    return 0;
}

} // namespace offload::detail
