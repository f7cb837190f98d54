// offload/detail/mpi/pool_core.hpp — rank 0's side of an mpi_pool: the
// handshake with every worker rank, the queue of calls not yet sent,
// least-loaded dispatch with a bound on the calls each rank holds,
// results coming home to the loop, cancellation (a queued call is dropped
// here; a sent one is cancelled on its rank, which kills the worker process
// running it), stats per rank, and shutdown.
//
// Threads: the MPI thread (runtime.hpp) hands every message to on_message(),
// which files it under mu_ and posts this core (a remote_node, the thread
// pool's completion path) to the loop, whose run_on_loop() resolves the calls.
// Calls are only ever resumed on their loop. shutdown() may run on any thread.
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/intrusive_list.hpp>
#include <offload/detail/loop/core.hpp>
#include <offload/detail/loop/remote_queue.hpp>
#include <offload/detail/mpi/protocol.hpp>
#include <offload/detail/mpi/runtime.hpp>
#include <offload/detail/process/call.hpp>
#include <offload/errors.hpp>
#include <offload/executor.hpp>
#include <offload/mpi_pool_options.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace offload {

/// One worker rank of an mpi_pool, as the handshake found it.
struct mpi_rank_info {
    /// Its rank in MPI_COMM_WORLD (1..size-1).
    int rank = 0;
    /// Its host (MPI_Get_processor_name).
    std::string host;
    /// Worker processes of its local pool.
    std::size_t workers = 0;
    /// The most calls it holds at once.
    std::size_t max_in_flight = 0;
};

} // namespace offload

namespace offload::detail {

/// A call of an mpi_pool: a process-pool call (same encoding) plus where it went.
struct mpi_call : process_call {
    using process_call::process_call;
    mpi_call(const mpi_call&) = delete;
    mpi_call& operator=(const mpi_call&) = delete;
    // Detaches here, while this is still an mpi_call (process_call's
    // destructor would hand the pool a process_call).
    ~mpi_call() {
        if (pool) pool->detach_call(this);
    }
    std::uint64_t id = 0;
    std::size_t rank_index = 0; // into the core's ranks, while running
};

class mpi_pool_core final : private loop_observer, private process_call_owner, private remote_node {
public:
    explicit mpi_pool_core(mpi_pool_options opts) : rt_(mpi_runtime::get()) { handshake(opts); }
    mpi_pool_core(const mpi_pool_core&) = delete;
    mpi_pool_core& operator=(const mpi_pool_core&) = delete;

    ~mpi_pool_core() {
        shutdown_impl(true, true, true);
        rt_.set_handler(nullptr);
        std::lock_guard lk(mu_);
        if (loop_) loop_core::remove_observer(this);
    }

    /// Loop thread: queues `c` and sends what the ranks can take.
    void submit(mpi_call* c) {
        std::lock_guard lk(mu_);
        if (!broken_why_.empty()) throw broken_executor(broken_why_);
        if (closed_)
            throw executor_closed("offload::executor_closed: the mpi_pool was shut down and takes no new "
                                  "calls; submit before shutdown() or create the pool again");
        if (!loop_) {
            loop_ = c->loop;
            loop_->add_observer(this);
        } else if (loop_ != c->loop) {
            throw std::logic_error("offload: an mpi_pool serves one event loop at a time and this one is bound to "
                                   "another loop (thread)");
        }
        c->pool = this;
        c->ph = process_call::phase::queued;
        c->enqueued = clock::now();
        pending_.push_back(c);
        total_.submitted.fetch_add(1, std::memory_order_relaxed);
        total_.note_queued();
        dispatch();
    }

    void shutdown(bool wait, bool cancel_pending) { shutdown_impl(wait, cancel_pending, false); }

    executor_stats stats() const {
        std::lock_guard lk(mu_);
        executor_stats s = total_.snapshot(workers_);
        for (const auto& r : ranks_) {
            s.crashes += r->remote.crashes;
            s.respawns += r->remote.respawns;
            s.kills += r->remote.kills;
        }
        return s;
    }

    std::vector<executor_stats> rank_stats() const {
        std::lock_guard lk(mu_);
        std::vector<executor_stats> out;
        for (const auto& r : ranks_) {
            executor_stats s = r->counters.snapshot(r->info.workers);
            s.crashes = r->remote.crashes;
            s.respawns = r->remote.respawns;
            s.kills = r->remote.kills;
            out.push_back(s);
        }
        return out;
    }

    std::vector<mpi_rank_info> ranks() const {
        std::lock_guard lk(mu_);
        std::vector<mpi_rank_info> out;
        for (const auto& r : ranks_) out.push_back(r->info);
        return out;
    }

    std::size_t workers() const noexcept { return workers_; }

private:
    struct rank_state {
        mpi_rank_info info;
        std::size_t in_flight = 0;
        bool stopped = false; // acknowledged tag_stop
        bool lost = false;    // MPI reported an error about it
        mpi_rank_counters remote;
        executor_counters counters; // what went to this rank
    };
    struct flight {
        mpi_call* call; // nullptr once its awaiter is gone
        std::size_t rank_index;
        clock::time_point sent;
    };

    // --- handshake -------------------------------------------------------------------
    void handshake(const mpi_pool_options& opts) {
        if (rt_.rank() != 0) {
            byte_writer w;
            encode_hello_reply(w, {mpi_hello_reply::forgot_worker_main, rt_.host(), 0, ::getpid(), 0, {}});
            rt_.send(0, tag_hello_reply, w.take_bytes());
            throw std::logic_error("offload::mpi_pool: constructed on MPI rank " + std::to_string(rt_.rank()) +
                                   "; only rank 0 makes the pool. Call offload::mpi_pool::worker_main(argc, argv) "
                                   "first thing in main: it serves calls on the other ranks");
        }
        if (rt_.size() < 2)
            throw std::invalid_argument("offload::mpi_pool: this MPI job has a single rank, so no rank can run calls; "
                                        "start the program with mpirun -np N (N >= 2)");
        if (rt_.pool_made())
            throw std::logic_error("offload::mpi_pool: one mpi_pool per MPI job: the worker ranks exit when the first "
                                   "one shuts down; keep one pool for the whole program");
        if (opts.handshake_timeout.count() <= 0)
            throw std::invalid_argument("offload: mpi_pool_options.handshake_timeout must be positive");
        if (opts.task_timeout && opts.task_timeout->count() <= 0)
            throw std::invalid_argument("offload: mpi_pool_options.task_timeout must be positive (or unset)");
        if (opts.nice < 0 || opts.nice > 19)
            throw std::invalid_argument("offload: mpi_pool_options.nice must be 0 to 19");
        rt_.mark_pool_made();
        rt_.set_handler([this](mpi_message&& m) { on_message(std::move(m)); });
        byte_writer w;
        encode_hello(w, {program_build_id(), opts});
        auto hello = w.take_bytes();
        for (int r = 1; r < rt_.size(); ++r) rt_.send(r, tag_hello, hello);

        std::unique_lock lk(mu_);
        auto deadline = std::chrono::steady_clock::now() + opts.handshake_timeout;
        cv_.wait_until(lk, deadline, [&] { return replies_.size() == static_cast<std::size_t>(rt_.size() - 1); });
        std::string problems;
        for (int r = 1; r < rt_.size(); ++r) {
            auto it = replies_.find(r);
            if (it == replies_.end()) {
                problems += "\n  rank " + std::to_string(r) + " did not answer within " +
                            std::to_string(opts.handshake_timeout.count()) +
                            " ms: does its main() call offload::mpi_pool::worker_main(argc, argv) first thing, and "
                            "is it the same program?";
                continue;
            }
            const mpi_hello_reply& h = it->second;
            std::string who = "rank " + std::to_string(r) + " (host " + h.host + ", pid " + std::to_string(h.pid) + ")";
            if (h.st == mpi_hello_reply::build_mismatch)
                problems += "\n  " + who + " runs a different build of the program (build id " +
                            std::to_string(h.build_id) + ", rank 0 has " + std::to_string(program_build_id()) +
                            "): calls name functions by their place in the binary, so every rank must run the "
                            "same executable file";
            else if (h.st == mpi_hello_reply::forgot_worker_main)
                problems += "\n  " + who +
                            " did not call offload::mpi_pool::worker_main(argc, argv) first thing in "
                            "main: it ran the program as if it were rank 0";
            else if (h.st == mpi_hello_reply::pool_failed)
                problems += "\n  " + who + " could not start its local process_pool: " + h.detail;
        }
        if (!problems.empty()) {
            // Ranks that answered from worker_main can end the job cleanly: the
            // ones that cannot serve exit after MPI_Finalize, the others are told
            // to stop. A rank that ran main() or never answered cannot: abort the
            // job at exit. Only then, as Open MPI 4.1's mpiexec sometimes hangs
            // or crashes in its own teardown after an abort.
            bool all_in_worker_main = replies_.size() == static_cast<std::size_t>(rt_.size() - 1) &&
                                      std::none_of(replies_.begin(), replies_.end(), [](const auto& p) {
                                          return p.second.st == mpi_hello_reply::forgot_worker_main;
                                      });
            if (all_in_worker_main) {
                for (const auto& [r, h] : replies_)
                    if (h.st == mpi_hello_reply::ok) rt_.send(r, tag_stop, {});
            } else {
                rt_.mark_broken();
            }
            throw std::runtime_error(std::string("offload::mpi_pool: the handshake with the worker ranks failed (") +
                                     (all_in_worker_main ? "the worker ranks have been told to exit"
                                                         : "the MPI job is aborted when this process exits") +
                                     "):" + problems);
        }
        for (int r = 1; r < rt_.size(); ++r) {
            auto s = std::make_unique<rank_state>();
            const auto& h = replies_[r];
            s->info = {r, h.host, static_cast<std::size_t>(h.workers),
                       opts.max_in_flight_per_rank ? opts.max_in_flight_per_rank
                                                   : std::max<std::size_t>(8, 4 * static_cast<std::size_t>(h.workers))};
            workers_ += s->info.workers;
            ranks_.push_back(std::move(s));
        }
        replies_.clear();
    }

    // --- messages (MPI thread) ----------------------------------------------------------
    void on_message(mpi_message&& m) {
        std::lock_guard lk(mu_);
        if (m.tag == tag_hello_reply) {
            try {
                byte_reader r(m.data);
                replies_[m.source] = decode_hello_reply(r);
            } catch (...) {
                replies_[m.source] = {mpi_hello_reply::pool_failed, "?", 0, 0, 0, "its handshake reply was corrupt"};
            }
        } else {
            inbox_.push_back(std::move(m));
            if (loop_ && !posted_) {
                posted_ = true;
                loop_->post_remote(this);
            }
        }
        cv_.notify_all();
    }

    // --- on the loop (or a thread that waits in shutdown with no loop running) -------------
    void run_on_loop() override {
        std::lock_guard lk(mu_);
        posted_ = false;
        if (cancel_requested_) {
            cancel_requested_ = false;
            fail_pending();
        }
        process_inbox();
    }
    void discard() noexcept override { // the loop is going away (under its own teardown)
        std::lock_guard lk(mu_);
        posted_ = false;
    }

    void loop_closing() noexcept override {
        std::lock_guard lk(mu_);
        loop_core::remove_observer(this);
        loop_ = nullptr;
        posted_ = false;
    }

    void process_inbox() {
        auto msgs = std::move(inbox_);
        inbox_.clear();
        for (auto& m : msgs) {
            std::size_t idx = static_cast<std::size_t>(m.source - 1);
            if (m.source < 1 || idx >= ranks_.size()) continue;
            rank_state& rk = *ranks_[idx];
            if (m.tag == tag_result) {
                on_result(rk, m);
            } else if (m.tag == tag_stop_ack) {
                rk.stopped = true;
            } else if (m.tag == tag_error) {
                rank_lost(idx, std::string(reinterpret_cast<const char*>(m.data.data()), m.data.size()));
            }
        }
        dispatch();
        maybe_stop();
        cv_.notify_all();
    }

    void on_result(rank_state& rk, const mpi_message& m) {
        byte_reader r(m.data);
        std::uint64_t id = codec<std::uint64_t>::decode(r);
        auto outcome = static_cast<mpi_outcome>(codec<std::uint8_t>::decode(r));
        rk.remote.crashes = codec<std::uint64_t>::decode(r);
        rk.remote.respawns = codec<std::uint64_t>::decode(r);
        rk.remote.kills = codec<std::uint64_t>::decode(r);
        auto it = flights_.find(id);
        if (it == flights_.end()) return;
        flight f = it->second;
        flights_.erase(it);
        --rk.in_flight;
        rk.counters.busy.fetch_sub(1, std::memory_order_relaxed);
        total_.busy.fetch_sub(1, std::memory_order_relaxed);
        auto run = static_cast<std::uint64_t>((clock::now() - f.sent).count());
        rk.counters.run_time.record(run);
        total_.run_time.record(run);
        rk.counters.bytes_received.fetch_add(m.data.size(), std::memory_order_relaxed);
        total_.bytes_received.fetch_add(m.data.size(), std::memory_order_relaxed);
        mpi_call* c = f.call;
        if (!c) return; // detached: counted as cancelled then
        auto count = [&](std::atomic<std::uint64_t> executor_counters::*field) {
            (rk.counters.*field).fetch_add(1, std::memory_order_relaxed);
            (total_.*field).fetch_add(1, std::memory_order_relaxed);
        };
        if (c->end == process_call::fate::cancelled || outcome == mpi_outcome::cancelled) {
            count(&executor_counters::cancelled);
            c->ph = process_call::phase::done;
            c->wake_cancelled();
            return;
        }
        if (outcome == mpi_outcome::value) {
            try {
                c->decode_result(r);
                count(&executor_counters::completed);
            } catch (...) {
                c->error = std::current_exception();
                count(&executor_counters::failed);
            }
        } else {
            c->error = decode_rank_error(outcome, r, rk.info.rank, rk.info.host);
            count(&executor_counters::failed);
        }
        c->ph = process_call::phase::done;
        c->wake();
    }

    void rank_lost(std::size_t idx, const std::string& why) {
        rank_state& rk = *ranks_[idx];
        if (rk.lost) return;
        rk.lost = true;
        std::string what = "offload::mpi_pool: lost MPI rank " + std::to_string(rk.info.rank) + " (host " +
                           rk.info.host + "): " + why;
        for (auto it = flights_.begin(); it != flights_.end();) {
            if (it->second.rank_index != idx) {
                ++it;
                continue;
            }
            if (mpi_call* c = it->second.call) {
                c->error = std::make_exception_ptr(broken_executor(what));
                c->ph = process_call::phase::done;
                total_.failed.fetch_add(1, std::memory_order_relaxed);
                c->wake();
            }
            total_.busy.fetch_sub(1, std::memory_order_relaxed);
            it = flights_.erase(it);
        }
        rk.in_flight = 0;
        if (std::all_of(ranks_.begin(), ranks_.end(), [](const auto& r) { return r->lost; })) {
            broken_why_ = what;
            fail_pending(std::make_exception_ptr(broken_executor(what)));
        }
    }

    // --- dispatch -------------------------------------------------------------------------
    void dispatch() {
        while (!pending_.empty()) {
            rank_state* best = nullptr;
            std::size_t best_idx = 0;
            for (std::size_t i = 0; i < ranks_.size(); ++i) {
                rank_state& r = *ranks_[i];
                if (r.lost || r.stopped || r.in_flight >= r.info.max_in_flight) continue;
                // least loaded: fewest calls per local worker
                if (!best || r.in_flight * best->info.workers < best->in_flight * r.info.workers) {
                    best = &r;
                    best_idx = i;
                }
            }
            if (!best) return;
            auto* c = static_cast<mpi_call*>(pending_.pop_front());
            total_.queued.fetch_sub(1, std::memory_order_relaxed);
            byte_writer w;
            try {
                codec<std::uint64_t>::encode(w, next_id_);
                c->encode_request(w);
                if (!w.fds().empty())
                    throw serialization_error(
                        "offload::mpi_pool: a shared_buffer cannot cross MPI ranks (it is a local memfd); pass the "
                        "bytes as a std::vector<std::byte> or std::string, which are sent by value");
            } catch (...) {
                c->error = std::current_exception();
                c->ph = process_call::phase::done;
                total_.failed.fetch_add(1, std::memory_order_relaxed);
                c->wake();
                continue;
            }
            auto wait = static_cast<std::uint64_t>((clock::now() - c->enqueued).count());
            total_.queue_wait.record(wait);
            best->counters.queue_wait.record(wait);
            c->id = next_id_++;
            c->rank_index = best_idx;
            c->ph = process_call::phase::running;
            flights_[c->id] = {c, best_idx, clock::now()};
            ++best->in_flight;
            best->counters.submitted.fetch_add(1, std::memory_order_relaxed);
            best->counters.busy.fetch_add(1, std::memory_order_relaxed);
            total_.busy.fetch_add(1, std::memory_order_relaxed);
            best->counters.bytes_sent.fetch_add(w.size(), std::memory_order_relaxed);
            total_.bytes_sent.fetch_add(w.size(), std::memory_order_relaxed);
            rt_.send(best->info.rank, tag_call, w.take_bytes());
        }
    }

    // --- cancellation (loop thread) ---------------------------------------------------------
    void cancel_call(process_call* pc) noexcept override {
        auto* c = static_cast<mpi_call*>(pc);
        std::lock_guard lk(mu_);
        if (c->ph == process_call::phase::queued) {
            intrusive_list<process_call>::erase(c);
            total_.queued.fetch_sub(1, std::memory_order_relaxed);
            total_.cancelled.fetch_add(1, std::memory_order_relaxed);
            c->ph = process_call::phase::done;
            c->wake_cancelled(); // never sent: it never runs anywhere
        } else if (c->ph == process_call::phase::running && c->end != process_call::fate::cancelled) {
            c->end = process_call::fate::cancelled; // resolves when the rank confirms (its worker killed)
            send_cancel(*c);
        }
    }

    void detach_call(process_call* pc) noexcept override {
        auto* c = static_cast<mpi_call*>(pc);
        std::lock_guard lk(mu_);
        if (c->ph == process_call::phase::queued) {
            intrusive_list<process_call>::erase(c);
            total_.queued.fetch_sub(1, std::memory_order_relaxed);
            total_.cancelled.fetch_add(1, std::memory_order_relaxed);
        } else if (c->ph == process_call::phase::running) {
            auto it = flights_.find(c->id);
            if (it != flights_.end()) {
                it->second.call = nullptr;
                total_.cancelled.fetch_add(1, std::memory_order_relaxed);
                ranks_[it->second.rank_index]->counters.cancelled.fetch_add(1, std::memory_order_relaxed);
                if (c->end != process_call::fate::cancelled) send_cancel(*c);
            }
        }
        c->ph = process_call::phase::done;
        c->pool = nullptr;
    }

    void send_cancel(const mpi_call& c) noexcept {
        try {
            byte_writer w;
            codec<std::uint64_t>::encode(w, c.id);
            rt_.send(ranks_[c.rank_index]->info.rank, tag_cancel, w.take_bytes());
        } catch (...) { // out of memory: the call runs to its end, and its result is dropped
        }
    }

    void fail_pending(std::exception_ptr e = nullptr) {
        if (!e)
            e = std::make_exception_ptr(executor_closed("offload::executor_closed: the mpi_pool was shut down with "
                                                        "cancel_pending before this call was sent to a rank"));
        while (process_call* pc = pending_.pop_front()) {
            total_.queued.fetch_sub(1, std::memory_order_relaxed);
            total_.cancelled.fetch_add(1, std::memory_order_relaxed);
            pc->error = e;
            pc->ph = process_call::phase::done;
            pc->wake();
        }
    }

    // --- shutdown ---------------------------------------------------------------------------
    void maybe_stop() {
        if (!closed_ || stop_sent_ || !pending_.empty() || !flights_.empty()) return;
        stop_sent_ = true;
        for (auto& r : ranks_)
            if (!r->lost) rt_.send(r->info.rank, tag_stop, {});
    }

    bool finished() const {
        return stop_sent_ &&
               std::all_of(ranks_.begin(), ranks_.end(), [](const auto& r) { return r->stopped || r->lost; });
    }

    void shutdown_impl(bool wait, bool cancel_pending, bool destroying) {
        std::unique_lock lk(mu_);
        closed_ = true;
        // On the loop's thread, in a step or between runs of the loop, nobody
        // else would process the inbox: do it here.
        bool on_loop = !loop_ || loop_->on_owner_thread();
        if (cancel_pending || destroying) {
            if (on_loop) {
                fail_pending();
            } else {
                cancel_requested_ = true;
                if (!posted_) {
                    posted_ = true;
                    loop_->post_remote(this);
                }
            }
        }
        if (destroying) // whatever still runs remotely is cancelled there (its worker killed)
            for (auto& [id, f] : flights_)
                if (!f.call || f.call->end != process_call::fate::cancelled) {
                    if (f.call) f.call->end = process_call::fate::cancelled;
                    byte_writer w;
                    codec<std::uint64_t>::encode(w, id);
                    rt_.send(ranks_[f.rank_index]->info.rank, tag_cancel, w.take_bytes());
                }
        maybe_stop();
        if (!wait) return;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!finished()) {
            if (on_loop) process_inbox(); // nobody else will: the loop is blocked here, or gone
            if (finished()) break;
            if (destroying) {
                if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && !finished()) {
                    rt_.mark_broken(); // ranks that never answer: abort the job at exit rather than hang
                    return;
                }
            } else {
                cv_.wait(lk);
            }
        }
    }

    mpi_runtime& rt_;
    mutable std::mutex mu_; // everything below
    std::condition_variable cv_;
    std::vector<std::unique_ptr<rank_state>> ranks_;
    std::unordered_map<int, mpi_hello_reply> replies_;
    std::size_t workers_ = 0;
    intrusive_list<process_call> pending_;
    std::unordered_map<std::uint64_t, flight> flights_;
    std::uint64_t next_id_ = 1;
    std::vector<mpi_message> inbox_;
    loop_core* loop_ = nullptr;
    bool posted_ = false;
    bool cancel_requested_ = false;
    bool closed_ = false;
    bool stop_sent_ = false;
    std::string broken_why_;
    executor_counters total_;
};

} // namespace offload::detail
