// bench_fairness — how long a socket waits for the loop while another task
// does CPU work in steps. One task runs CPU steps of 1, 5 and 20 ms separated
// by `co_await sleep(0s)` (asyncio's idiom for yielding); another awaits
// readable() on a socketpair that a writer thread writes one byte to at
// random moments. The readiness delay is the time from the write to the
// reader's resumption. A fair loop notices the fd after at most one step
// (plus a small polling budget); Python asyncio, which polls with a zero
// timeout before every batch of ready callbacks, is the peer.
//
//   bench_fairness [--smoke] [--no-python] [--json PATH]
#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include "bench_common.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
using offload::task;
using offload_bench::bench_clock;

namespace {

struct config {
    std::vector<int> steps_ms = {1, 5, 20};
    int samples = 30;
};

long long now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(bench_clock::now().time_since_epoch()).count();
}

// What the reader and the writer thread share.
struct channel {
    int rd = -1;
    int wr = -1;
    std::atomic<long long> written_at{0};
    std::atomic<int> received{0};
    std::atomic<bool> stop{false};
    std::vector<double> delays_us;

    channel() {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
            throw std::runtime_error("bench_fairness: socketpair failed");
        rd = sv[0];
        wr = sv[1];
    }
    channel(const channel&) = delete;
    channel& operator=(const channel&) = delete;
    ~channel() {
        ::close(rd);
        ::close(wr);
    }
};

// CPU work in steps of `step`, yielding to the loop between steps.
task<> cpu_steps(std::chrono::milliseconds step, channel& ch) {
    while (!ch.stop.load(std::memory_order_relaxed)) {
        const auto end = bench_clock::now() + step;
        while (bench_clock::now() < end) {
        }
        co_await offload::sleep(0s);
    }
}

task<> reader(channel& ch, int samples, std::chrono::milliseconds step) {
    auto cpu = offload::create_task(cpu_steps(step, ch));
    auto& loop = offload::event_loop::current();
    for (int i = 0; i < samples; ++i) {
        co_await loop.readable(ch.rd);
        const long long t = now_ns();
        char c;
        while (::read(ch.rd, &c, 1) < 0 && errno == EINTR) {
        }
        ch.delays_us.push_back(static_cast<double>(t - ch.written_at.load()) / 1e3);
        ch.received.store(i + 1);
    }
    ch.stop = true;
    co_await cpu;
}

// Writes one byte at a random phase of the steps, `samples` times, each after
// the reader got the previous one.
void writer(channel& ch, int samples, std::chrono::milliseconds step) {
    std::mt19937 rng(12345);
    std::uniform_int_distribution<long> phase_us(0, 2 * std::chrono::microseconds(step).count());
    for (int i = 0; i < samples; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(200 + phase_us(rng)));
        ch.written_at.store(now_ns());
        while (::write(ch.wr, "x", 1) < 0 && errno == EINTR) {
        }
        while (ch.received.load() <= i) std::this_thread::sleep_for(50us);
    }
}

std::vector<double> measure(std::chrono::milliseconds step, int samples) {
    channel ch;
    std::thread w(writer, std::ref(ch), samples, step);
    offload::run(reader(ch, samples, step));
    w.join();
    return ch.delays_us;
}

} // namespace

int main(int argc, char** argv) {
    offload_bench::options opt;
    if (auto rc = offload_bench::parse_options(argc, argv, opt, "bench_fairness.json", false)) return *rc;
    config cfg;
    if (opt.smoke) {
        cfg.steps_ms = {1};
        cfg.samples = 5;
    }

    offload_bench::python_result py;
    if (opt.python) {
        std::string steps;
        for (int s : cfg.steps_ms) steps += fmt::format("{}{}", steps.empty() ? "" : ",", s);
        fmt::print("running the Python asyncio peer...\n");
        py = offload_bench::run_python("bench_fairness.py", fmt::format("--steps {} --samples {}", steps, cfg.samples),
                                       argv[0]);
    } else {
        py.unavailable = "n/a (--no-python)";
    }

    std::vector<offload_bench::row> rows;
    for (int s : cfg.steps_ms) {
        auto d = measure(std::chrono::milliseconds(s), cfg.samples);
        const double med = offload_bench::median(d);
        const double p90 = offload_bench::percentile(d, 0.9);
        auto peer = [&](const char* stat) {
            auto key = fmt::format("step_{}ms_{}_us", s, stat);
            auto v = py.get(key);
            return offload_bench::peer{"asyncio", v, py.unavailable.value_or("n/a (missing)")};
        };
        rows.emplace_back(fmt::format("step_{}ms_median_us", s),
                          fmt::format("readiness delay, {} ms CPU steps, median", s), offload_bench::kind::time_us, med,
                          std::vector<offload_bench::peer>{peer("median")}, "asyncio", 1.0);
        rows.emplace_back(fmt::format("step_{}ms_p90_us", s), fmt::format("readiness delay, {} ms CPU steps, p90", s),
                          offload_bench::kind::time_us, p90, std::vector<offload_bench::peer>{peer("p90")}, "asyncio",
                          1.0);
    }
    fmt::print("\nbench_fairness: a socket's wait for the loop while a task runs CPU steps ({} samples per step)\n",
               cfg.samples);
    offload_bench::print_table(rows, 1);
    offload_bench::write_json(opt.json_path, "bench_fairness", opt.smoke, 1, rows,
                              fmt::format("  \"samples\": {},\n", cfg.samples));
    return 0;
}
