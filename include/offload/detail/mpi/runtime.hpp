// offload/detail/mpi/runtime.hpp — the one thread of a process that talks
// to MPI. It initializes MPI (MPI_Init_thread with MPI_THREAD_FUNNELED: it is
// then the "main" thread for MPI, and the only one that ever calls it), sends
// what other threads queue, receives whatever arrives (MPI_Improbe/MPI_Mrecv)
// and hands it to a handler, and finalizes MPI at the end (or aborts the job
// when a handshake failed, since MPI_Finalize would wait for ranks that will
// never get there). MPI has no descriptor to sleep on, so the thread polls:
// it yields while messages keep coming, then sleeps with a growing backoff
// (to 1 ms) that a local send cuts short.
#pragma once

#include <offload/detail/base/clock.hpp>

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <fstream>
#include <functional>
#include <list>
#include <mutex>
#include <sched.h>
#include <stdexcept>
#include <string>
#include <sys/prctl.h>
#include <thread>
#include <utility>
#include <vector>

namespace offload::detail {

/// Message tags of the mpi_pool protocol (on a communicator of its own).
enum mpi_tag : int {
    tag_hello = 101,       // rank 0 -> worker: build id and options
    tag_hello_reply = 102, // worker -> rank 0: accepted, mismatch, or "forgot worker_main"
    tag_call = 103,        // rank 0 -> worker: call id + encoded call
    tag_cancel = 104,      // rank 0 -> worker: call id
    tag_result = 105,      // worker -> rank 0: call id + outcome
    tag_stop = 106,        // rank 0 -> worker: shut down (nothing is in flight)
    tag_stop_ack = 107,    // worker -> rank 0: stopped; MPI_Finalize follows
    tag_bye = 108,         // rank 0 -> worker: no pool will come; exit
    tag_batch = 109,       // several messages for one rank: [tag u64][size u64][bytes]...
    tag_error = -1,        // local: an MPI call about this peer failed (data: the message)
};

struct mpi_message {
    int source = 0;
    int tag = 0;
    std::vector<std::byte> data;
};

/// A hash of this program's executable (its bytes and size): ranks compare
/// it at the handshake, because calls name functions by their offset in it.
inline std::uint64_t program_build_id() {
    std::ifstream f("/proc/self/exe", std::ios::binary);
    if (!f) throw std::runtime_error("offload::mpi_pool: cannot read /proc/self/exe to compute the build id");
    std::uint64_t h = 1469598103934665603ull, size = 0;
    std::vector<char> buf(1 << 20);
    while (f) {
        f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        auto n = static_cast<std::size_t>(f.gcount());
        size += n;
        std::size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            std::uint64_t w;
            std::memcpy(&w, buf.data() + i, 8);
            h = (h ^ w) * 1099511628211ull;
        }
        for (; i < n; ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 1099511628211ull;
    }
    return h ^ (size * 0x9e3779b97f4a7c15ull);
}

class mpi_runtime {
public:
    using handler_fn = std::function<void(mpi_message&&)>;

    /// The process's runtime; the first call starts the thread and MPI (and
    /// throws if MPI cannot start or lacks MPI_THREAD_FUNNELED).
    static mpi_runtime& get() {
        static mpi_runtime rt;
        return rt;
    }

    mpi_runtime(const mpi_runtime&) = delete;
    mpi_runtime& operator=(const mpi_runtime&) = delete;
    ~mpi_runtime() { finalize(); }

    int rank() const noexcept { return rank_; }
    int size() const noexcept { return size_; }
    const std::string& host() const noexcept { return host_; }

    /// Any thread: queues `data` for `dest` (sent in order per destination).
    void send(int dest, int tag, std::vector<std::byte> data) {
        std::lock_guard lk(mu_);
        outbox_.push_back({dest, tag, std::move(data)});
        cv_.notify_one();
    }

    /// Any thread: where received messages go from now on (called on the MPI
    /// thread). Messages that arrived while there was no handler are kept
    /// and handed to the next one, in order.
    void set_handler(handler_fn h) {
        std::deque<mpi_message> early;
        {
            std::lock_guard lk(handler_mu_);
            handler_ = std::move(h);
            if (!handler_) return;
            early.swap(early_);
            for (auto& m : early) handler_(std::move(m));
        }
    }

    /// The job cannot end cleanly (a handshake failed): finalize() aborts it.
    void mark_broken() noexcept { broken_.store(true); }
    /// Rank 0 made a pool (the worker ranks are told by it, not by finalize()).
    void mark_pool_made() noexcept { pool_made_.store(true); }
    bool pool_made() const noexcept { return pool_made_.load(); }

    /// Sends what is queued, then MPI_Finalize (MPI_Abort if marked broken),
    /// and stops the thread. Idempotent. On rank 0 without a pool, first
    /// tells the worker ranks (waiting in worker_main) that none will come.
    void finalize() noexcept {
        if (!thread_.joinable()) return;
        if (rank_ == 0 && !pool_made_.load() && !broken_.load())
            for (int r = 1; r < size_; ++r) send(r, tag_bye, {});
        {
            std::lock_guard lk(mu_);
            stop_ = true;
            cv_.notify_one();
        }
        thread_.join();
    }

private:
    struct out_msg {
        int dest;
        int tag;
        std::vector<std::byte> data;
    };
    struct pending_send {
        MPI_Request req = MPI_REQUEST_NULL;
        int dest = 0;
        std::vector<std::byte> data;
    };

    mpi_runtime() {
        std::exception_ptr failed;
        bool ready = false;
        std::mutex m;
        std::condition_variable cv;
        thread_ = std::thread([&] {
            bool ok = true;
            try {
                init();
            } catch (...) {
                failed = std::current_exception();
                ok = false;
            }
            {
                // The constructor's locals (failed, ready, m, cv) die once it
                // sees ready: touch none of them after this block.
                std::lock_guard lk(m);
                ready = true;
                cv.notify_one();
            }
            if (ok) progress();
        });
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return ready; });
        lk.unlock();
        if (failed) {
            thread_.join();
            std::rethrow_exception(failed);
        }
    }

    static std::string error_text(int code) {
        char text[MPI_MAX_ERROR_STRING];
        int len = 0;
        if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
        return std::string(text, static_cast<std::size_t>(len));
    }

    void init() {
        int inited = 0;
        MPI_Initialized(&inited);
        if (inited)
            throw std::logic_error("offload::mpi_pool: MPI was initialized before the pool's runtime; mpi_pool owns "
                                   "MPI in its process (call mpi_pool::worker_main first and make no MPI calls)");
        int provided = 0;
        int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) throw std::runtime_error("offload::mpi_pool: MPI_Init_thread failed: " + error_text(rc));
        if (provided < MPI_THREAD_FUNNELED) {
            MPI_Finalize();
            throw std::runtime_error("offload::mpi_pool: this MPI library does not provide MPI_THREAD_FUNNELED, which "
                                     "the pool's progress thread needs; use a thread-enabled build of Open MPI");
        }
        MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
        // Errors come back as codes (and are reported to rank 0) instead of
        // MPI_ERRORS_ARE_FATAL. Open MPI 4.1 still aborts the whole job when a
        // rank process dies; this only covers what it does report.
        MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &size_);
        char name[MPI_MAX_PROCESSOR_NAME];
        int len = 0;
        MPI_Get_processor_name(name, &len);
        host_.assign(name, static_cast<std::size_t>(len));
        ::prctl(PR_SET_TIMERSLACK, 1UL); // short backoff sleeps mean what they say
    }

    void deliver(mpi_message&& m) {
        std::lock_guard lk(handler_mu_);
        if (handler_)
            handler_(std::move(m));
        else
            early_.push_back(std::move(m));
    }

    void report(int peer, const std::string& what) {
        mpi_message m{peer, tag_error, {}};
        m.data.resize(what.size());
        std::memcpy(m.data.data(), what.data(), what.size());
        deliver(std::move(m));
    }

    // Returns true when something happened.
    // Several messages queued for one rank travel as one (tag_batch): under
    // load (a gather, a map) one MPI message carries many calls or results.
    static void coalesce(std::deque<out_msg>& out) {
        if (out.size() < 2) return;
        std::deque<out_msg> merged;
        for (auto& o : out) {
            if (!merged.empty() && merged.back().dest == o.dest) {
                auto& b = merged.back();
                if (b.tag != tag_batch) {
                    std::vector<std::byte> first = std::move(b.data);
                    b.data.clear();
                    append_part(b.data, b.tag, first);
                    b.tag = tag_batch;
                }
                append_part(b.data, o.tag, o.data);
            } else {
                merged.push_back(std::move(o));
            }
        }
        out.swap(merged);
    }
    static void append_part(std::vector<std::byte>& to, int tag, const std::vector<std::byte>& part) {
        std::uint64_t head[2] = {static_cast<std::uint64_t>(tag), part.size()};
        auto* h = reinterpret_cast<const std::byte*>(head);
        to.insert(to.end(), h, h + sizeof head);
        to.insert(to.end(), part.begin(), part.end());
    }
    void deliver_batch(int source, const std::vector<std::byte>& data) {
        std::size_t pos = 0;
        while (pos + 16 <= data.size()) {
            std::uint64_t head[2];
            std::memcpy(head, data.data() + pos, sizeof head);
            pos += sizeof head;
            if (head[1] > data.size() - pos) break; // corrupt: drop the rest
            mpi_message m{source, static_cast<int>(head[0]), {}};
            m.data.assign(data.begin() + static_cast<std::ptrdiff_t>(pos),
                          data.begin() + static_cast<std::ptrdiff_t>(pos + head[1]));
            pos += head[1];
            deliver(std::move(m));
        }
    }

    bool pump(std::deque<out_msg>& out) {
        bool busy = !out.empty() || !sends_.empty(); // a send in progress needs polling to finish
        coalesce(out);
        for (auto& o : out) {
            pending_send p{MPI_REQUEST_NULL, o.dest, std::move(o.data)};
            int rc = MPI_Isend(p.data.data(), static_cast<int>(p.data.size()), MPI_BYTE, o.dest, o.tag, comm_, &p.req);
            if (rc != MPI_SUCCESS) {
                report(o.dest, "sending to rank " + std::to_string(o.dest) + " failed: " + error_text(rc));
                continue;
            }
            sends_.push_back(std::move(p));
        }
        out.clear();
        for (auto it = sends_.begin(); it != sends_.end();) {
            int done = 0;
            int rc = MPI_Test(&it->req, &done, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) {
                report(it->dest, "sending to rank " + std::to_string(it->dest) + " failed: " + error_text(rc));
                it = sends_.erase(it);
            } else if (done) {
                it = sends_.erase(it);
            } else {
                ++it;
            }
        }
        for (int i = 0; i < 64; ++i) {
            int flag = 0;
            MPI_Message msg;
            MPI_Status st;
            int rc = MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &msg, &st);
            if (rc != MPI_SUCCESS) {
                report(st.MPI_SOURCE, "receiving failed: " + error_text(rc));
                break;
            }
            if (!flag) break;
            int n = 0;
            MPI_Get_count(&st, MPI_BYTE, &n);
            mpi_message m{st.MPI_SOURCE, st.MPI_TAG, std::vector<std::byte>(static_cast<std::size_t>(n))};
            rc = MPI_Mrecv(m.data.data(), n, MPI_BYTE, &msg, &st);
            if (rc != MPI_SUCCESS) {
                report(m.source, "receiving from rank " + std::to_string(m.source) + " failed: " + error_text(rc));
                break;
            }
            if (m.tag == tag_batch)
                deliver_batch(m.source, m.data);
            else
                deliver(std::move(m));
            busy = true;
        }
        return busy;
    }

    void progress() {
        using namespace std::chrono;
        std::deque<out_msg> out;
        auto last_busy = steady_clock::now();
        microseconds backoff{0};
        for (;;) {
            bool stopping;
            {
                std::unique_lock lk(mu_);
                if (outbox_.empty() && !stop_ && backoff.count() > 0)
                    cv_.wait_for(lk, backoff, [&] { return !outbox_.empty() || stop_; });
                out.swap(outbox_);
                stopping = stop_;
            }
            bool busy = pump(out);
            if (stopping && out.empty() && sends_.empty()) {
                std::lock_guard lk(mu_);
                if (outbox_.empty()) break;
            }
            auto now = steady_clock::now();
            if (busy) {
                last_busy = now;
                backoff = microseconds(0);
            } else if (now - last_busy < microseconds(200)) {
                // Messages come in bursts: keep polling a while. A yield, not
                // a sleep: measured on 2 oversubscribed cores (bench_mpi), 2-5 us
                // sleeps here tripled the round trip.
                sched_yield();
            } else {
                backoff = std::clamp(backoff * 2, microseconds(20), microseconds(1000));
            }
            if (stopping && now - last_busy > seconds(5) && !sends_.empty()) break; // a peer that never receives
        }
        if (broken_.load()) {
            std::fflush(nullptr);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        for (auto& s : sends_) MPI_Cancel(&s.req);
        sends_.clear();
        MPI_Comm_free(&comm_);
        MPI_Finalize();
    }

    std::thread thread_;
    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0;
    int size_ = 1;
    std::string host_;

    std::mutex mu_; // outbox_, stop_
    std::condition_variable cv_;
    std::deque<out_msg> outbox_;
    bool stop_ = false;

    std::mutex handler_mu_; // handler_, early_
    handler_fn handler_;
    std::deque<mpi_message> early_;

    std::atomic<bool> broken_{false};
    std::atomic<bool> pool_made_{false};
    std::list<pending_send> sends_; // MPI thread only
};

} // namespace offload::detail
