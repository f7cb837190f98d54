// tests/support/user_executor.hpp — an executor written the way a user would
// (one thread, a FIFO of executor_work), to test that run_in_executor and map
// accept any type modelling offload::executor. Tests can hold it (calls wait
// in its queue), drop what is queued, or make execute() throw.
#pragma once

#include <offload/executor.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace offload_test {

class user_executor {
public:
    user_executor() : thread_([this] { loop(); }) {}
    user_executor(const user_executor&) = delete;
    user_executor& operator=(const user_executor&) = delete;
    ~user_executor() { shutdown(true, false); }

    void execute(offload::executor_work w) {
        std::lock_guard lk(mu_);
        if (refuse_) throw std::runtime_error("user_executor: refusing work");
        ++submitted_;
        queue_.push_back(std::move(w));
        cv_.notify_one();
    }
    offload::executor_stats stats() const {
        std::lock_guard lk(mu_);
        offload::executor_stats s;
        s.workers = 1;
        s.submitted = submitted_;
        s.completed = ran_;
        s.queued = queue_.size();
        return s;
    }
    void shutdown(bool wait, bool cancel_pending) {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
            if (cancel_pending) queue_.clear(); // destroyed unrun: executor_closed
            held_ = false;
            cv_.notify_all();
        }
        if (wait && thread_.joinable()) thread_.join();
    }

    /// While held, work stays queued.
    void hold(bool on) {
        std::lock_guard lk(mu_);
        held_ = on;
        cv_.notify_all();
    }
    /// Destroys every queued work unrun.
    void drop_queued() {
        std::deque<offload::executor_work> gone;
        std::lock_guard lk(mu_);
        gone.swap(queue_);
    }
    /// Makes execute() throw.
    void refuse(bool on) {
        std::lock_guard lk(mu_);
        refuse_ = on;
    }
    std::size_t queued() const {
        std::lock_guard lk(mu_);
        return queue_.size();
    }

private:
    void loop() {
        std::unique_lock lk(mu_);
        for (;;) {
            cv_.wait(lk, [this] { return stop_ || (!held_ && !queue_.empty()); });
            if (queue_.empty() || held_) {
                if (stop_) return;
                continue;
            }
            offload::executor_work w = std::move(queue_.front());
            queue_.pop_front();
            lk.unlock();
            w();
            lk.lock();
            ++ran_;
        }
    }

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<offload::executor_work> queue_;
    bool stop_ = false;
    bool held_ = false;
    bool refuse_ = false;
    std::uint64_t submitted_ = 0;
    std::uint64_t ran_ = 0;
    std::thread thread_;
};

} // namespace offload_test
