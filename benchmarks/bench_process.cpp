// bench_process.cpp — offloading calls to worker processes, side by side with
// Python's ProcessPoolExecutor driven from asyncio (benchmarks/bench_process.py,
// run as a subprocess), for each start method (fork, spawn, forkserver).
//
//   bench_process [--smoke] [--no-python] [--json PATH] [--hogs N]
//
// --hogs N runs N busy-loop processes beside the whole program (Python peer
// included); the round trip and gather rows then carry issue 9's targets
// under load: >= 10x faster than Python, >= 10x Python's gathered rate. Under
// hogs the payload and map rows use smaller sizes and every figure 3 repeats.
//
// Measures, with process_pool({.workers = 2, .start = m}) and co_await
// run_in_executor(pool, fn, args...): (1) the sequential round trip of a no-op
// (median, p99), (2) the throughput of 10k gathered no-ops, (3) pool start to
// first result, (4) payload round trips by value (1 KiB, 1 MiB, 64 MiB) and a
// 64 MiB shared_buffer hand-off, (5) offload::map over 1M ints per chunk size.
// Prints one table (offload, Python, the cost ratio, the targets and whether
// they are met) and writes the same figures as JSON (default ./bench_process.json).
// Ratios are "offload cost / peer cost": below 1 means offload is faster.
#include "bench_common.hpp"

#include <offload/event_loop.hpp>
#include <offload/gather.hpp>
#include <offload/process_pool.hpp>
#include <offload/task.hpp>

#if __has_include(<offload/shared_buffer.hpp>)
#include <offload/shared_buffer.hpp>
#define BENCH_HAVE_SHARED_BUFFER 1
#else
#define BENCH_HAVE_SHARED_BUFFER 0
#endif

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <numeric>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

using namespace offload_bench;
using offload::start_method;

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(fmt::format("bench_process: self-check failed: {}", what));
}

struct payload_case {
    std::size_t bytes;
    long n; // timed round trips
};

struct config : options {
    int repeats = 5;        // offload repeats per figure (median)
    int python_repeats = 3; // Python is the slowest part of the run
    long n_warmup = 100;
    long n_seq = 2000;
    long n_gather = 10'000;
    int start_repeats = 5;
    std::vector<payload_case> payloads = {{1024, 500}, {std::size_t(1) << 20, 50}, {std::size_t(64) << 20, 5}};
    std::size_t shm_bytes = std::size_t(64) << 20;
    long shm_n = 50;
    long map_items = 1'000'000;
    std::vector<std::size_t> chunks = {1000, 10'000, 100'000};
};

// --- what the workers run ---------------------------------------------------------

[[gnu::noinline]] void noop() { do_not_optimize(0); }

std::vector<std::uint8_t> echo(std::vector<std::uint8_t> v) { return v; }

int twice(int x) { return 2 * x + 1; }

#if BENCH_HAVE_SHARED_BUFFER
// Writes the first byte (the page is faulted in the worker) and hands the buffer back.
offload::shared_buffer touch(offload::shared_buffer b) {
    b.data()[0] = std::byte(static_cast<unsigned char>(std::to_integer<unsigned>(b.data()[0]) + 1));
    return b;
}
#endif

// --- measurements -------------------------------------------------------------------

struct latency {
    double median_us = 0;
    double p99_us = 0;
};

// Runs `body(pool)` (a task) on a fresh loop with a fresh pool of 2 workers.
template <class R, class Body>
R with_pool(start_method m, Body body) {
    offload::event_loop loop;
    offload::process_pool pool({.workers = 2, .start = m});
    return loop.run_until_complete(body(pool));
}

offload::task<latency> seq_latency(offload::process_pool& pool, long warmup, long n) {
    for (long i = 0; i < warmup; ++i) co_await offload::run_in_executor(pool, noop);
    std::vector<double> ns;
    ns.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) {
        auto t0 = bench_clock::now();
        co_await offload::run_in_executor(pool, noop);
        ns.push_back(ns_since(t0));
    }
    latency l;
    l.median_us = percentile(ns, 0.50) / 1e3;
    l.p99_us = percentile(ns, 0.99) / 1e3;
    co_return l;
}

offload::task<> one_noop(offload::process_pool& pool) { co_await offload::run_in_executor(pool, noop); }

offload::task<double> gather_rate(offload::process_pool& pool, long warmup, long n) {
    for (long i = 0; i < warmup; ++i) co_await offload::run_in_executor(pool, noop);
    auto t0 = bench_clock::now();
    std::vector<offload::task<>> calls;
    calls.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) calls.push_back(one_noop(pool));
    auto done = co_await offload::gather(std::move(calls));
    double ns = ns_since(t0);
    check(done.size() == static_cast<std::size_t>(n), "gather count");
    co_return static_cast<double>(n) / ns * 1e9;
}

// µs from constructing the pool to the result of its first call (the pool's
// destruction is not timed).
double start_us(start_method m) {
    offload::event_loop loop;
    auto t0 = bench_clock::now();
    offload::process_pool pool({.workers = 2, .start = m});
    loop.run_until_complete(one_noop(pool));
    return ns_since(t0) / 1e3;
}

// Median µs to send `bytes` to a worker by value and get them back. The
// vector is moved into each call (an lvalue argument would be copied into the
// call first, as std::thread copies its arguments: a user copy, not transport).
offload::task<double> payload_us(offload::process_pool& pool, std::size_t bytes, long n) {
    std::vector<std::uint8_t> data(bytes);
    for (std::size_t i = 0; i < bytes; ++i) data[i] = static_cast<std::uint8_t>(i);
    auto back = co_await offload::run_in_executor(pool, echo, data); // warm-up (grows the mailboxes)
    check(back == data, "payload echo");
    std::vector<double> ns;
    for (long i = 0; i < n; ++i) {
        auto t0 = bench_clock::now();
        back = co_await offload::run_in_executor(pool, echo, std::move(back));
        ns.push_back(ns_since(t0));
        check(back.size() == bytes, "payload size");
    }
    check(back == data, "payload echo after the timed calls");
    co_return median(std::move(ns)) / 1e3;
}

#if BENCH_HAVE_SHARED_BUFFER
// Median µs to hand a `bytes` shared_buffer to a worker (it writes one byte)
// and get it back.
offload::task<double> shm_us(offload::process_pool& pool, std::size_t bytes, long n) {
    offload::shared_buffer buf(bytes);
    auto back = co_await offload::run_in_executor(pool, touch, buf); // warm-up
    check(back.size() == bytes && back.data()[0] == std::byte{1}, "shared_buffer touch");
    std::vector<double> ns;
    for (long i = 0; i < n; ++i) {
        const auto before = std::to_integer<unsigned>(buf.data()[0]);
        auto t0 = bench_clock::now();
        back = co_await offload::run_in_executor(pool, touch, buf);
        ns.push_back(ns_since(t0));
        check(std::to_integer<unsigned>(buf.data()[0]) == ((before + 1) & 0xFF), "shared_buffer byte seen");
    }
    co_return median(std::move(ns)) / 1e3;
}
#endif

// items/s of offload::map(pool, twice, items, chunk), chunking included.
offload::task<double> map_rate(offload::process_pool& pool, const std::vector<int>& items, std::size_t chunk) {
    co_await offload::run_in_executor(pool, noop); // workers up
    auto t0 = bench_clock::now();
    auto out = co_await offload::map(pool, twice, items, chunk);
    double ns = ns_since(t0);
    check(out.size() == items.size() && out.back() == twice(items.back()), "map result");
    co_return static_cast<double>(items.size()) / ns * 1e9;
}

std::string size_label(std::size_t b) {
    if (b >= (std::size_t(1) << 20) && b % (std::size_t(1) << 20) == 0) return fmt::format("{} MiB", b >> 20);
    if (b >= 1024 && b % 1024 == 0) return fmt::format("{} KiB", b >> 10);
    return fmt::format("{} B", b);
}

std::string count_label(long n) { return n % 1000 == 0 ? fmt::format("{}k", n / 1000) : fmt::format("{}", n); }

} // namespace

int main(int argc, char** argv) {
    // Spawned workers re-execute this binary: they start (and stay) here.
    offload::process_pool::worker_main(argc, argv);

    config cfg;
    if (auto stop = parse_options(argc, argv, cfg, "bench_process.json", false)) return *stop;
    if (cfg.smoke) {
        cfg.repeats = cfg.python_repeats = cfg.start_repeats = 1;
        cfg.n_warmup = 5;
        cfg.n_seq = 50;
        cfg.n_gather = 200;
        cfg.payloads = {{1024, 2}, {std::size_t(1) << 20, 1}};
        cfg.shm_bytes = std::size_t(1) << 20;
        cfg.shm_n = 2;
        cfg.map_items = 20'000;
        cfg.chunks = {1000, 10'000};
    }
    if (cfg.hogs > 0 && !cfg.smoke) {
        // Under hogs everything (Python most of all) runs several times slower:
        // fewer repeats and smaller payload and map sizes keep the run short.
        cfg.repeats = cfg.python_repeats = cfg.start_repeats = 3;
        cfg.payloads = {{1024, 200}, {std::size_t(1) << 20, 20}};
        cfg.shm_bytes = std::size_t(1) << 20;
        cfg.shm_n = 20;
        cfg.map_items = 100'000;
        cfg.chunks = {1000, 10'000};
    }
    const start_method methods[] = {start_method::fork, start_method::spawn, start_method::forkserver};

    try {
        const int R = cfg.repeats;
        fmt::print("bench_process: process_pool({{.workers = 2}}) vs ProcessPoolExecutor(2); offload {} repeats "
                   "per figure, Python {} (median){}; {} CPUs online{}\n",
                   R, cfg.python_repeats, cfg.smoke ? ", SMOKE sizes" : "", ::sysconf(_SC_NPROCESSORS_ONLN),
                   hogs_note());

        // Python first, while nothing else runs (it is the slowest part).
        python_result py;
        if (cfg.python) {
            fmt::print("running the Python asyncio + ProcessPoolExecutor peer...\n");
            std::string sizes, ns, chunks;
            for (auto& p : cfg.payloads) {
                sizes += fmt::format(" {}", p.bytes);
                ns += fmt::format(" {}", p.n);
            }
            for (auto c : cfg.chunks) chunks += fmt::format(" {}", c);
            py = run_python("bench_process.py",
                            fmt::format("--n-seq {} --warmup {} --gather {} --payloads{} --payload-n{} --shm {} "
                                        "--shm-n {} --map-items {} --chunks{} --repeats {}",
                                        cfg.n_seq, cfg.n_warmup, cfg.n_gather, sizes, ns,
                                        BENCH_HAVE_SHARED_BUFFER ? cfg.shm_bytes : 0, cfg.shm_n, cfg.map_items, chunks,
                                        cfg.python_repeats),
                            argv[0]);
        } else {
            py.unavailable = "n/a (--no-python)";
        }
        auto py_peer = [&](std::string_view key) { return python_peer(py, key); };
        using targets = std::vector<target_spec>;

        std::vector<int> items(static_cast<std::size_t>(cfg.map_items));
        std::iota(items.begin(), items.end(), 0);

        fmt::print("running offload...\n");
        std::vector<row> rows;
        for (start_method m : methods) {
            const std::string mn = offload::to_string(m);

            // 1. Sequential round trip of a no-op.
            {
                std::vector<double> med, p99;
                for (int i = 0; i < R; ++i) {
                    auto l = with_pool<latency>(m, [&](offload::process_pool& p) {
                        return seq_latency(p, cfg.n_warmup, cfg.n_seq);
                    });
                    med.push_back(l.median_us);
                    p99.push_back(l.p99_us);
                }
                rows.push_back({mn + "_seq_median",
                                fmt::format("{}: round trip of a no-op, median", mn),
                                kind::time_us,
                                median(med),
                                {py_peer(mn + "_seq_median_us")},
                                // idle: 20x faster than Python; issue 9, under hogs: 10x
                                targets{{"python", cfg.hogs > 0 ? 1.0 / 10 : 1.0 / 20}}});
                rows.push_back({mn + "_seq_p99",
                                fmt::format("{}: round trip of a no-op, p99", mn),
                                kind::time_us,
                                median(p99),
                                {py_peer(mn + "_seq_p99_us")},
                                targets{}});
            }

            // 2. Throughput of gathered no-ops.
            {
                double off = median_of(R, [&] {
                    return with_pool<double>(m, [&](offload::process_pool& p) {
                        return gather_rate(p, cfg.n_warmup, cfg.n_gather);
                    });
                });
                rows.push_back({fmt::format("{}_gather_{}", mn, cfg.n_gather),
                                fmt::format("{}: gather {} no-ops", mn, count_label(cfg.n_gather)),
                                kind::rate,
                                off,
                                {py_peer(fmt::format("{}_gather_{}_per_s", mn, cfg.n_gather))},
                                targets{{"python", 1.0 / 10}}}); // >= 10x Python's rate (issue 9: also under hogs)
            }

            // 3. Pool start to first result (µs in the table: bench_common has no ms unit).
            {
                double off = median_of(cfg.start_repeats, [&] { return start_us(m); });
                peer p = py_peer(mn + "_start_ms");
                if (p.value) *p.value *= 1e3;
                rows.push_back({mn + "_start",
                                fmt::format("{}: pool start to first result", mn),
                                kind::time_us,
                                off,
                                {p},
                                targets{{"python", 1.0 / 10}}});
            }

            // 4, 5: payloads, shared_buffer and map on one pool.
            offload::event_loop loop;
            offload::process_pool pool({.workers = 2, .start = m});
            for (auto& pc : cfg.payloads) {
                double off = median_of(R, [&] { return loop.run_until_complete(payload_us(pool, pc.bytes, pc.n)); });
                rows.push_back({fmt::format("{}_payload_{}", mn, pc.bytes),
                                fmt::format("{}: {} by value, round trip", mn, size_label(pc.bytes)),
                                kind::time_us,
                                off,
                                {py_peer(fmt::format("{}_payload_{}_us", mn, pc.bytes))},
                                pc.bytes >= (std::size_t(64) << 20) ? targets{{"python", 1.0 / 10}} : targets{}});
            }
#if BENCH_HAVE_SHARED_BUFFER
            {
                double off = median_of(R,
                                       [&] { return loop.run_until_complete(shm_us(pool, cfg.shm_bytes, cfg.shm_n)); });
                rows.push_back({fmt::format("{}_shm_{}", mn, cfg.shm_bytes),
                                fmt::format("{}: {} shared_buffer hand-off (vs SharedMemory by name)", mn,
                                            size_label(cfg.shm_bytes)),
                                kind::time_us,
                                off,
                                {py_peer(fmt::format("{}_shm_{}_us", mn, cfg.shm_bytes))},
                                targets{{"", 1000.0}}});
            }
#endif
            for (std::size_t c : cfg.chunks) {
                double off = median_of(R, [&] { return loop.run_until_complete(map_rate(pool, items, c)); });
                rows.push_back({fmt::format("{}_map_{}_c{}", mn, cfg.map_items, c),
                                fmt::format("{}: map {} ints, chunk {}", mn, count_label(cfg.map_items),
                                            count_label(static_cast<long>(c))),
                                kind::rate,
                                off,
                                {py_peer(fmt::format("{}_map_{}_c{}_per_s", mn, cfg.map_items, c))},
                                targets{}});
            }
        }

        fmt::print("\n");
        print_table(rows, 1);
        fmt::print("\nratio = offload cost / python cost (below 1: offload faster). offload: process_pool({{.workers = "
                   "2, .start = m}}) + co_await run_in_executor; python: ProcessPoolExecutor(2, mp_context=m) + "
                   "loop.run_in_executor (map: pool.map(chunksize=c) via loop.run_in_executor(None, ...)).\n"
                   "Pool start is in us (python forkserver: warm server, as Python keeps one per interpreter; "
                   "cold first start {}).{}\n",
                   py.get("forkserver_start_cold_ms") ? fmt::format("{:.1f} ms", *py.get("forkserver_start_cold_ms"))
                                                      : std::string("n/a"),
                   hogs_note().empty() ? "" : " Every column ran under the same hogs.");
        write_json(cfg.json_path, "bench_process", cfg.smoke, cfg.repeats, rows,
                   fmt::format("  \"workers\": 2,\n  \"n_seq\": {},\n  \"n_gather\": {},\n  \"map_items\": {},\n"
                               "  \"python_repeats\": {},\n  \"python_forkserver_start_cold_ms\": {},\n",
                               cfg.n_seq, cfg.n_gather, cfg.map_items, cfg.python_repeats,
                               json_number(py.get("forkserver_start_cold_ms"))));
        fmt::print("JSON: {}\n", cfg.json_path);
    } catch (const std::exception& e) {
        fmt::print(stderr, "bench_process: {}\n", e.what());
        return 1;
    }
    return 0;
}
