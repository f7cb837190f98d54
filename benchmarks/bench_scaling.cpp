// bench_scaling.cpp — how offload's costs grow with the number of operations
// in flight, side by side with Python asyncio (benchmarks/bench_scaling.py, run
// as a subprocess):
//
//   bench_scaling [--smoke] [--no-python] [--json PATH]
//
// (1) Round trip of one `co_await to_thread(noop)` (the loop's default pool)
//     while K = 1, 100, 10k, 100k other offloads are pending. The pending ones
//     are real awaited offloads: K run_in_executor calls on a second,
//     one-worker pool whose worker is held on a latch, so K-1 of them wait in
//     its queue and all K are outstanding on the loop (one task awaits their
//     gather; a second variant has K tasks, each awaiting one call). The
//     figure says whether the loop's per-offload cost depends on how much
//     else is outstanding: flat is the goal. Python: the same, with
//     loop.run_in_executor on a one-thread ThreadPoolExecutor held by a
//     threading.Event, and asyncio.to_thread for the timed round trips.
// (2) Memory per pending offload: the heap growth (glibc mallinfo2, bytes in
//     use) while 100k gathered run_in_executor calls are pending, divided by
//     100k; likewise with each call awaited in its own task. Python:
//     tracemalloc's growth over 100k pending run_in_executor futures (and
//     tasks awaiting them), which counts Python-level allocations only.
// (3) Memory per suspended task: the growth while 100k tasks wait on one
//     offload::event (Python: asyncio.Event), divided by 100k.
//
// Latency rows: the median (and p99) of 2000 round trips per K, from the best
// of 5 repeats (see measure_latencies); memory rows: one measurement (they are
// deterministic up to allocator rounding).
#include "bench_common.hpp"

#include <offload/event.hpp>
#include <offload/event_loop.hpp>
#include <offload/gather.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>
#include <offload/thread_pool.hpp>
#include <offload/to_thread.hpp>

#include <fmt/format.h>

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using namespace offload_bench;

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(fmt::format("bench_scaling: self-check failed: {}", what));
}

struct config {
    std::vector<long> in_flight = {1, 100, 10'000, 100'000};
    long samples = 2000;  // timed round trips per K
    long warmup = 200;
    long memory_n = 100'000; // pending offloads / suspended tasks for the memory rows
    int repeats = 5;        // of each latency figure (median of the repeats)
};

[[gnu::noinline]] void noop() { do_not_optimize(0); }

// Holds the one worker of a pool until opened (blocked in the kernel, so it
// takes no CPU from the loop and the pool it measures).
struct latch {
    std::atomic<bool> is_open{false};
    void wait() const { is_open.wait(false, std::memory_order_acquire); }
    void open() {
        is_open.store(true, std::memory_order_release);
        is_open.notify_all();
    }
};

double heap_in_use() {
    struct mallinfo2 mi = ::mallinfo2();
    return static_cast<double>(mi.uordblks + mi.hblkhd);
}

using blocked_call = offload::thread_call<void (*)()>;

// Starts `k` offloads on `blocked` (the first holds its worker on `l`): as one
// gather (`as_tasks` false) or as k tasks, each awaiting its own call.
offload::task<> pending_gather(std::vector<blocked_call> calls) { co_await offload::gather(std::move(calls)); }
offload::task<> pending_one(offload::thread_pool& p) { co_await offload::run_in_executor(p, noop); }

struct in_flight {
    std::vector<offload::task_handle<>> handles;
};

// Makes `k` pending offloads; returns what keeps them (awaited by drain()).
in_flight start_pending(offload::thread_pool& blocked, latch& l, long k, bool as_tasks) {
    in_flight f;
    // The first call holds the worker; every other call waits in the queue.
    f.handles.push_back(offload::create_task([](offload::thread_pool& p, latch& l) -> offload::task<> {
        co_await offload::run_in_executor(p, [&l] { l.wait(); });
    }(blocked, l)));
    if (as_tasks) {
        f.handles.reserve(static_cast<std::size_t>(k));
        for (long i = 1; i < k; ++i) f.handles.push_back(offload::create_task(pending_one(blocked)));
    } else {
        std::vector<blocked_call> calls;
        calls.reserve(static_cast<std::size_t>(k));
        for (long i = 1; i < k; ++i) calls.push_back(offload::run_in_executor(blocked, noop));
        f.handles.push_back(offload::create_task(pending_gather(std::move(calls))));
    }
    return f;
}

offload::task<> drain(in_flight& f, latch& l) {
    l.open();
    for (auto& h : f.handles) co_await h;
}

struct latency {
    double median_us = 0;
    double p99_us = 0;
};

offload::task<latency> round_trips_while(offload::thread_pool& blocked, long k, bool as_tasks, const config& cfg) {
    latch l;
    in_flight f = start_pending(blocked, l, k, as_tasks);
    co_await offload::sleep(0ms); // the pending ones start
    co_await offload::sleep(0ms);
    for (long i = 0; i < cfg.warmup; ++i) co_await offload::to_thread(noop);
    check(blocked.stats().queued + blocked.stats().busy == static_cast<std::size_t>(k), "all K pending");
    std::vector<double> ns;
    ns.reserve(static_cast<std::size_t>(cfg.samples));
    for (long i = 0; i < cfg.samples; ++i) {
        auto t0 = bench_clock::now();
        co_await offload::to_thread(noop);
        ns.push_back(ns_since(t0));
    }
    co_await drain(f, l);
    latency r;
    r.median_us = percentile(ns, 0.50) / 1e3;
    r.p99_us = percentile(ns, 0.99) / 1e3;
    co_return r;
}

// One repeat: one loop, one default pool, one held pool, and every K in turn,
// so that all K are measured with the same threads on the same cores.
offload::task<std::vector<latency>> round_trips_for_each_k(offload::thread_pool& blocked, bool as_tasks,
                                                           const config& cfg) {
    std::vector<latency> out;
    for (long k : cfg.in_flight) out.push_back(co_await round_trips_while(blocked, k, as_tasks, cfg));
    co_return out;
}

// Per K, the repeat with the lowest median (its median and p99). On a small
// machine the round trip is bimodal (about 0.6 or about 100 µs) depending on
// whether the pool's spinning worker happens to share the loop's core, which
// has nothing to do with K; the best of a few repeats takes that out.
std::vector<latency> measure_latencies(bool as_tasks, const config& cfg) {
    std::vector<latency> best(cfg.in_flight.size(), latency{1e300, 0});
    for (int r = 0; r < cfg.repeats; ++r) {
        offload::thread_pool blocked({.workers = 1, .name = "blocked"});
        offload::event_loop loop;
        std::vector<latency> ls = loop.run_until_complete(round_trips_for_each_k(blocked, as_tasks, cfg));
        for (std::size_t i = 0; i < ls.size(); ++i)
            if (ls[i].median_us < best[i].median_us) best[i] = ls[i];
    }
    return best;
}

// Bytes of heap per pending offload (gathered, or each in its own task).
offload::task<double> pending_bytes(offload::thread_pool& blocked, long n, bool as_tasks) {
    latch l;
    // Warm the loop, the pool and the allocator's arenas first.
    co_await offload::run_in_executor(blocked, noop);
    double before = heap_in_use();
    in_flight f = start_pending(blocked, l, n, as_tasks);
    co_await offload::sleep(0ms);
    co_await offload::sleep(0ms);
    check(blocked.stats().queued + blocked.stats().busy == static_cast<std::size_t>(n), "all n pending");
    double after = heap_in_use();
    co_await drain(f, l);
    co_return (after - before) / static_cast<double>(n);
}

// Bytes of heap per task suspended on an event.
offload::task<double> suspended_task_bytes(long n) {
    offload::event ev;
    std::vector<offload::task_handle<>> hs;
    hs.reserve(static_cast<std::size_t>(n)); // outside the measurement: the handles are the caller's
    co_await offload::sleep(0ms);
    double before = heap_in_use();
    for (long i = 0; i < n; ++i)
        hs.push_back(offload::create_task([](offload::event& e) -> offload::task<> { co_await e.wait(); }(ev)));
    co_await offload::sleep(0ms); // every task runs to its wait
    double after = heap_in_use();
    ev.set();
    for (auto& h : hs) co_await h;
    co_return (after - before) / static_cast<double>(n);
}

double measure_pending_bytes(long n, bool as_tasks) {
    offload::thread_pool blocked({.workers = 1, .name = "blocked"});
    offload::event_loop loop;
    return loop.run_until_complete(pending_bytes(blocked, n, as_tasks));
}

double measure_task_bytes(long n) {
    offload::event_loop loop;
    return loop.run_until_complete(suspended_task_bytes(n));
}

std::string count_label(long n) {
    return n >= 1000 && n % 1000 == 0 ? fmt::format("{}k", n / 1000) : fmt::format("{}", n);
}

} // namespace

int main(int argc, char** argv) {
    options opt;
    if (auto rc = parse_options(argc, argv, opt, "bench_scaling.json", false)) return *rc;
    config cfg;
    if (opt.smoke) {
        cfg.in_flight = {1, 100};
        cfg.samples = 100;
        cfg.warmup = 20;
        cfg.memory_n = 1000;
        cfg.repeats = 1;
    }

    python_result py;
    if (opt.python) {
        std::string ks;
        for (long k : cfg.in_flight) ks += fmt::format(" {}", k);
        fmt::print("running the Python asyncio peer...\n");
        py = run_python("bench_scaling.py",
                        fmt::format("--in-flight{} --samples {} --warmup {} --memory-n {} --repeats {}", ks,
                                    cfg.samples, cfg.warmup, cfg.memory_n, std::min(cfg.repeats, 3)),
                        argv[0]);
    } else {
        py.unavailable = "n/a (--no-python)";
    }
    auto py_peer = [&](std::string_view key) { return python_peer(py, key); };

    fmt::print("running offload...\n");
    std::vector<row> rows;
    for (bool as_tasks : {false, true}) {
        const char* how = as_tasks ? "tasks" : "gather";
        std::vector<latency> ls = measure_latencies(as_tasks, cfg);
        for (std::size_t i = 0; i < ls.size(); ++i) {
            const long k = cfg.in_flight[i];
            const latency& l = ls[i];
            std::string label = fmt::format("to_thread(noop) with {} pending ({}), median", count_label(k),
                                            as_tasks ? "K tasks" : "1 gather");
            std::string key = fmt::format("rtt_{}_{}", how, k);
            rows.emplace_back(key + "_median_us", label, kind::time_us, l.median_us,
                              std::vector<peer>{py_peer(key + "_median_us")}, "", 0.0);
            rows.emplace_back(key + "_p99_us",
                              fmt::format("to_thread(noop) with {} pending ({}), p99", count_label(k),
                                          as_tasks ? "K tasks" : "1 gather"),
                              kind::time_us, l.p99_us, std::vector<peer>{py_peer(key + "_p99_us")}, "", 0.0);
        }
    }
    // Growth: the latency at the largest K over the latency at K = 1 (flat = 1.0).
    std::string growth;
    for (const char* how : {"gather", "tasks"}) {
        double first = 0, last = 0;
        for (auto& r : rows) {
            if (r.key == fmt::format("rtt_{}_{}_median_us", how, cfg.in_flight.front())) first = r.offload;
            if (r.key == fmt::format("rtt_{}_{}_median_us", how, cfg.in_flight.back())) last = r.offload;
        }
        growth += fmt::format("  \"rtt_{}_growth\": {:.3f},\n", how, first > 0 ? last / first : 0.0);
    }

    // Memory (bytes): printed as its own table, since the rows above are times.
    struct mem_row {
        std::string key, label;
        double offload;
        std::optional<double> python;
        double goal;
    };
    std::vector<mem_row> mem = {
        {"bytes_per_pending_offload_gather",
         fmt::format("bytes per pending offload ({} gathered run_in_executor)", count_label(cfg.memory_n)),
         measure_pending_bytes(cfg.memory_n, false), py.get("bytes_per_pending_offload_gather"), 256},
        {"bytes_per_pending_offload_task",
         fmt::format("bytes per pending offload, each in its own task ({})", count_label(cfg.memory_n)),
         measure_pending_bytes(cfg.memory_n, true), py.get("bytes_per_pending_offload_task"), 0},
        {"bytes_per_suspended_task",
         fmt::format("bytes per task suspended on an event ({})", count_label(cfg.memory_n)),
         measure_task_bytes(cfg.memory_n), py.get("bytes_per_suspended_task"), 512},
    };

    fmt::print("\nbench_scaling: round trip of one to_thread(noop) while K other offloads are pending "
               "(held in a one-worker pool)\n");
    print_table(rows, 1);
    fmt::print("\nmemory                                                      | offload  | python   | ratio | goal\n");
    fmt::print(
        "------------------------------------------------------------+----------+----------+-------+---------\n");
    std::string mem_json;
    for (auto& m : mem) {
        std::string pyv = m.python ? fmt::format("{:.0f} B", *m.python) : py.unavailable.value_or("n/a");
        std::string ratio = m.python && *m.python > 0 ? fmt::format("{:.2f}x", m.offload / *m.python) : "-";
        std::string goal = m.goal > 0 ? fmt::format("<= {:.0f} B {}", m.goal, m.offload <= m.goal ? "met" : "NOT MET")
                                      : "-";
        fmt::print("{:<60}| {:<9}| {:<9}| {:<6}| {}\n", m.label, fmt::format("{:.0f} B", m.offload), pyv, ratio, goal);
        mem_json += fmt::format("  \"{}\": {{\"offload\": {:.1f}, \"python\": {}, \"goal\": {}}},\n", m.key, m.offload,
                                json_number(m.python), m.goal > 0 ? fmt::format("{:.0f}", m.goal) : "null");
    }
    fmt::print("\nratio = offload cost / peer cost (below 1: offload faster or smaller). Python's bytes are "
               "tracemalloc's (Python-level allocations only).\n");
    write_json(opt.json_path, "bench_scaling", opt.smoke, cfg.repeats, rows,
               fmt::format("  \"samples\": {},\n  \"memory_n\": {},\n", cfg.samples, cfg.memory_n) + growth + mem_json);
    fmt::print("JSON: {}\n", opt.json_path);
    return 0;
}
