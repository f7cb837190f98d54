// bench_crossover.cpp — when does offloading a call beat running it inline on
// the loop? A grid of compute per call W × payload size P, each cell timed
// inline, on a thread_pool and on a process_pool, side by side with Python's
// asyncio + ThreadPoolExecutor / ProcessPoolExecutor (benchmarks/
// bench_crossover.py, run as a subprocess). Offloading has a fixed cost per
// call (a hand-off, and for a process a copy of the arguments both ways): below
// some W it loses to inline, and the larger P, the larger that W.
//
//   bench_crossover [--smoke] [--no-python] [--json PATH] [--hogs N]
//
// The work of one call reads every payload byte once, then spins W (integer
// math calibrated at start to CPU ns per iteration; Python's is pure Python,
// so it holds the GIL). The payload travels by value (a std::vector<std::byte>
// argument, copied into each offloaded call; Python: bytes, pickled for a
// process, shared as is by a thread) or, for P >= 64 KiB, as a
// offload::shared_buffer handle (Python: a multiprocessing.shared_memory
// segment whose name a worker process attaches; threads read it in place).
// A batch of M calls is timed: inline, one after the other on the loop;
// pooled, all gathered at once, on pools of available_cpus() workers. M is
// sized per figure from a pilot batch (which also warms up) so a batch takes
// about 40 ms: at least 2 x workers calls (workers for 64 MiB payloads).
//
// Prints one line per (payload kind, P, W): ns per call of each executor and
// its speed-up over inline (inline time / executor time: above 1, offloading
// pays), then the crossovers: for each executor and payload, the smallest W at
// which it beats inline, interpolated linearly in log W between grid points
// ("always": already at the smallest W; "never": not even at the largest).
// Writes the same as JSON (default ./bench_crossover.json): the bench_common
// rows (offload vs Python, per executor and cell), plus "grid" and "crossover".
// Timings never decide the exit status; wrong results (checksums) do.
#include "bench_common.hpp"

#include <offload/available_cpus.hpp>
#include <offload/event_loop.hpp>
#include <offload/gather.hpp>
#include <offload/process_pool.hpp>
#include <offload/shared_buffer.hpp>
#include <offload/task.hpp>
#include <offload/thread_pool.hpp>
#include <offload/to_thread.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <time.h>
#include <type_traits>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

using namespace offload_bench;

void check(bool ok, std::string_view what) {
    if (!ok) throw std::runtime_error(fmt::format("bench_crossover: self-check failed: {}", what));
}

constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;

struct config : options {
    std::vector<double> work_ns = {1e3, 1e4, 1e5, 1e6, 1e7};
    std::vector<std::size_t> value_bytes = {0, KiB, 64 * KiB, MiB, 16 * MiB, 64 * MiB};
    std::vector<std::size_t> shared_bytes = {64 * KiB, MiB, 16 * MiB, 64 * MiB};
    double target_ms = 40;                   // wall time of one measured batch
    long max_calls = 20'000;                 // ... but no more calls than this
    std::size_t max_batch_bytes = 256 * MiB; // ... nor more payload copies in flight
    int repeats = 3;                         // measured batches per figure (median)
    std::size_t workers = 0;                 // set in main: available_cpus()
};

// --- the work of one call -------------------------------------------------------

// `iters` rounds of a 64-bit LCG: each depends on the last, and the empty asm
// keeps the compiler from folding the loop, so the time is linear in iters.
[[gnu::noinline]] std::uint64_t spin(std::uint64_t iters, std::uint64_t x) {
    for (std::uint64_t i = 0; i < iters; ++i) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        asm volatile("" : "+r"(x));
    }
    return x;
}

// Reads every byte once (a sum of 8-byte words, then the tail).
std::uint64_t read_all(std::span<const std::byte> data) {
    std::uint64_t sum = data.size();
    std::size_t i = 0;
    for (; i + 8 <= data.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, data.data() + i, 8);
        sum += w;
    }
    for (; i < data.size(); ++i) sum += std::to_integer<std::uint64_t>(data[i]);
    return sum;
}

std::uint64_t work(std::span<const std::byte> data, std::uint64_t iters) { return spin(iters, read_all(data)); }

// What each executor runs: plain functions, so a process pool can run them too.
// The payload parameter is a const reference, so calling inline copies
// nothing; run_in_executor still takes its arguments by value (a copy of the
// vector into each call, as std::thread does), which is the cost measured.
std::uint64_t work_value(const std::vector<std::byte>& data, std::uint64_t iters) { return work(data, iters); }

std::uint64_t work_shared(const offload::shared_buffer& buf, std::uint64_t iters) {
    return work({buf.data(), buf.size()}, iters);
}

// The function for a payload type.
template <class Payload>
constexpr auto work_fn() {
    if constexpr (std::is_same_v<Payload, offload::shared_buffer>)
        return &work_shared;
    else
        return &work_value;
}

// CPU time of this thread, ns: unlike wall time, not stretched while other
// processes have the core, so W means the same on a busy machine.
double thread_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// CPU ns per spin iteration: the fastest of a few runs of at least `min_ns`.
double calibrate(double min_ns) {
    std::uint64_t iters = 1000;
    for (;;) {
        const double t0 = thread_cpu_ns();
        do_not_optimize(spin(iters, 1));
        if (thread_cpu_ns() - t0 >= min_ns) break;
        iters *= 2;
    }
    double best = 1e300;
    for (int i = 0; i < 5; ++i) {
        const double t0 = thread_cpu_ns();
        do_not_optimize(spin(iters, 1));
        best = std::min(best, (thread_cpu_ns() - t0) / static_cast<double>(iters));
    }
    return best;
}

// --- timing a batch -----------------------------------------------------------------

enum class exec_kind { inline_, thread, process };
constexpr std::array<exec_kind, 3> all_execs = {exec_kind::inline_, exec_kind::thread, exec_kind::process};

const char* name_of(exec_kind e) {
    switch (e) {
    case exec_kind::inline_: return "inline";
    case exec_kind::thread: return "thread";
    case exec_kind::process: return "process";
    }
    return "";
}

struct pools {
    offload::process_pool& process;
    offload::thread_pool& thread;
};

// One offloaded call. `payload` is owned by the batch, which outlives it.
template <class Pool, class Payload>
offload::task<std::uint64_t> one_call(Pool& pool, const Payload& payload, std::uint64_t iters) {
    co_return co_await offload::run_in_executor(pool, work_fn<Payload>(), payload, iters);
}

template <class Pool, class Payload>
offload::task<std::vector<std::uint64_t>> gathered(Pool& pool, const Payload& payload, std::uint64_t iters, long m) {
    std::vector<offload::task<std::uint64_t>> calls;
    calls.reserve(static_cast<std::size_t>(m));
    for (long i = 0; i < m; ++i) calls.push_back(one_call(pool, payload, iters));
    co_return co_await offload::gather(std::move(calls));
}

// Wall ns of m calls on executor `e` (inline: one after the other on the
// loop; pooled: all gathered at once); checks every call's checksum.
template <class Payload>
offload::task<double> batch_ns(pools p, exec_kind e, const Payload& payload, std::uint64_t iters, long m,
                               std::uint64_t expect) {
    std::vector<std::uint64_t> results;
    results.reserve(static_cast<std::size_t>(m));
    auto t0 = bench_clock::now();
    switch (e) {
    case exec_kind::inline_:
        for (long i = 0; i < m; ++i) results.push_back(work_fn<Payload>()(payload, iters));
        break;
    case exec_kind::thread: results = co_await gathered(p.thread, payload, iters, m); break;
    case exec_kind::process: results = co_await gathered(p.process, payload, iters, m); break;
    }
    double ns = ns_since(t0);
    check(results.size() == static_cast<std::size_t>(m), "batch size");
    for (auto r : results) check(r == expect, fmt::format("{} call returned a wrong checksum", name_of(e)));
    co_return ns;
}

struct figure {
    double ns_per_call = 0;
    long calls = 0;
};

// Calls in a batch: enough for about target_ms, at least `min_calls`, at most
// max_calls, and at most max_batch_bytes of payload copies in flight.
long choose_calls(const config& cfg, double per_call_ns, long min_calls, std::size_t bytes) {
    double m = std::ceil(cfg.target_ms * 1e6 / std::max(per_call_ns, 1.0));
    m = std::min(m, static_cast<double>(cfg.max_calls));
    if (bytes > 0) m = std::min(m, static_cast<double>(std::max<std::size_t>(1, cfg.max_batch_bytes / bytes)));
    return std::max(min_calls, static_cast<long>(m));
}

// A pilot batch of min_calls (warm-up, and the size of the next batches),
// then the median per-call time of cfg.repeats batches: one batch only where
// the pilot says it would take over 5 x target_ms (the large payloads, whose
// copies dominate and vary little). --smoke: the pilot only.
template <class Payload>
figure measure(offload::event_loop& loop, const config& cfg, pools p, exec_kind e, const Payload& payload,
               std::uint64_t iters, long min_calls, std::size_t bytes, std::uint64_t expect) {
    double pilot = loop.run_until_complete(batch_ns(p, e, payload, iters, min_calls, expect));
    const double pilot_per_call = pilot / static_cast<double>(min_calls);
    if (cfg.smoke) return {pilot_per_call, min_calls};
    const long m = choose_calls(cfg, pilot_per_call, min_calls, bytes);
    const bool long_batch = pilot_per_call * static_cast<double>(m) > 5 * cfg.target_ms * 1e6;
    double per_call = median_of(long_batch ? 1 : cfg.repeats, [&] {
        return loop.run_until_complete(batch_ns(p, e, payload, iters, m, expect)) / static_cast<double>(m);
    });
    return {per_call, m};
}

// --- the grid and its crossovers ----------------------------------------------------

// One measured figure, as the "grid" JSON entries have it.
struct point {
    std::string impl; // "offload" or "python"
    exec_kind exec;
    std::string payload; // "value" or "shared"
    std::size_t bytes;
    double work_ns;
    long calls;
    double ns_per_call;
};

struct cell_key {
    std::string payload;
    std::size_t bytes;
};

std::vector<cell_key> cells_of(const config& cfg) {
    std::vector<cell_key> cells;
    for (auto b : cfg.value_bytes) cells.push_back({"value", b});
    for (auto b : cfg.shared_bytes) cells.push_back({"shared", b});
    return cells;
}

const point* find(const std::vector<point>& grid, std::string_view impl, exec_kind e, const cell_key& c, double w) {
    for (auto& p : grid)
        if (p.impl == impl && p.exec == e && p.payload == c.payload && p.bytes == c.bytes && p.work_ns == w) return &p;
    return nullptr;
}

std::optional<double> speedup(const std::vector<point>& grid, std::string_view impl, exec_kind e, const cell_key& c,
                              double w) {
    auto* in = find(grid, impl, exec_kind::inline_, c, w);
    auto* ex = find(grid, impl, e, c, w);
    if (!in || !ex || ex->ns_per_call <= 0) return std::nullopt;
    return in->ns_per_call / ex->ns_per_call;
}

struct crossover {
    std::string impl;
    exec_kind exec;
    cell_key cell;
    std::optional<double> work_ns; // set when interpolated
    std::string note;              // "always", "never", "interpolated" (or "" when unmeasured)
};

// The smallest W at which `e` beats inline (speed-up > 1): with s rising from
// s0 <= 1 at W0 to s1 > 1 at W1, log W = log W0 + (1 - s0) / (s1 - s0) * (log W1 - log W0).
crossover find_crossover(const std::vector<point>& grid, const config& cfg, std::string_view impl, exec_kind e,
                         const cell_key& c) {
    crossover x{std::string(impl), e, c, std::nullopt, ""};
    std::optional<double> prev;
    for (std::size_t i = 0; i < cfg.work_ns.size(); ++i) {
        auto s = speedup(grid, impl, e, c, cfg.work_ns[i]);
        if (!s) return x; // not measured (no Python, or the cell was skipped)
        if (*s > 1) {
            if (i == 0) {
                x.note = "always";
            } else {
                const double lw0 = std::log(cfg.work_ns[i - 1]), lw1 = std::log(cfg.work_ns[i]);
                x.work_ns = std::exp(lw0 + (1 - *prev) / (*s - *prev) * (lw1 - lw0));
                x.note = "interpolated";
            }
            return x;
        }
        prev = s;
    }
    x.note = "never";
    return x;
}

// --- printing -----------------------------------------------------------------------

std::string size_label(std::size_t b) {
    if (b >= MiB && b % MiB == 0) return fmt::format("{} MiB", b / MiB);
    if (b >= KiB && b % KiB == 0) return fmt::format("{} KiB", b / KiB);
    return fmt::format("{} B", b);
}

std::string time_label(double ns) {
    if (ns >= 1e6) return fmt::format("{:.3g} ms", ns / 1e6);
    if (ns >= 1e3) return fmt::format("{:.3g} us", ns / 1e3);
    return fmt::format("{:.3g} ns", ns);
}

std::string crossover_label(const crossover& x) {
    if (x.note == "interpolated") return fmt::format("W ~ {}", time_label(*x.work_ns));
    return x.note.empty() ? "n/a" : x.note;
}

void print_grid(const std::vector<point>& grid, const config& cfg) {
    // One column per executor: "ns per call" and, pooled, "(speed-up)".
    auto col = [&](std::string_view impl, exec_kind e, const cell_key& c, double w) -> std::string {
        auto* p = find(grid, impl, e, c, w);
        if (!p) return "-";
        if (e == exec_kind::inline_) return time_label(p->ns_per_call);
        auto s = speedup(grid, impl, e, c, w);
        return fmt::format("{} ({:.2f}x)", time_label(p->ns_per_call), s ? *s : 0.0);
    };
    const std::string head = fmt::format("{:<15} {:>6} | {:>10} {:>17} {:>17} | {:>10} {:>17} {:>17}", "payload", "W",
                                         "C++ inline", "C++ thread", "C++ process", "Py inline", "Py thread",
                                         "Py process");
    fmt::print("{}\n{}\n", head, std::string(head.size(), '-'));
    for (auto& c : cells_of(cfg))
        for (double w : cfg.work_ns)
            fmt::print("{:<15} {:>6} | {:>10} {:>17} {:>17} | {:>10} {:>17} {:>17}\n",
                       fmt::format("{} {}", c.payload, size_label(c.bytes)), time_label(w),
                       col("offload", exec_kind::inline_, c, w), col("offload", exec_kind::thread, c, w),
                       col("offload", exec_kind::process, c, w), col("python", exec_kind::inline_, c, w),
                       col("python", exec_kind::thread, c, w), col("python", exec_kind::process, c, w));
}

void print_crossovers(const std::vector<crossover>& xs, const config& cfg) {
    auto label = [&](std::string_view impl, exec_kind e, const cell_key& c) -> std::string {
        for (auto& x : xs)
            if (x.impl == impl && x.exec == e && x.cell.payload == c.payload && x.cell.bytes == c.bytes)
                return crossover_label(x);
        return "n/a";
    };
    const std::string head = fmt::format("{:<15} | {:>13} {:>13} | {:>13} {:>13}", "payload", "C++ thread",
                                         "C++ process", "Py thread", "Py process");
    fmt::print("{}\n{}\n", head, std::string(head.size(), '-'));
    for (auto& c : cells_of(cfg))
        fmt::print("{:<15} | {:>13} {:>13} | {:>13} {:>13}\n", fmt::format("{} {}", c.payload, size_label(c.bytes)),
                   label("offload", exec_kind::thread, c), label("offload", exec_kind::process, c),
                   label("python", exec_kind::thread, c), label("python", exec_kind::process, c));
}

// --- JSON -----------------------------------------------------------------------------

std::string grid_json(const std::vector<point>& grid) {
    std::string s = "  \"grid\": [\n";
    for (std::size_t i = 0; i < grid.size(); ++i) {
        auto& p = grid[i];
        s += fmt::format("    {{\"impl\": \"{}\", \"executor\": \"{}\", \"payload\": \"{}\", \"bytes\": {}, "
                         "\"work_ns\": {:.0f}, \"calls\": {}, \"ns_per_call\": {}}}{}\n",
                         p.impl, name_of(p.exec), p.payload, p.bytes, p.work_ns, p.calls, json_number(p.ns_per_call),
                         i + 1 < grid.size() ? "," : "");
    }
    return s + "  ],\n";
}

std::string crossover_json(const std::vector<crossover>& xs) {
    std::string s = "  \"crossover\": [\n";
    for (std::size_t i = 0; i < xs.size(); ++i) {
        auto& x = xs[i];
        s += fmt::format("    {{\"impl\": \"{}\", \"executor\": \"{}\", \"payload\": \"{}\", \"bytes\": {}, "
                         "\"work_ns\": {}, \"note\": \"{}\"}}{}\n",
                         x.impl, name_of(x.exec), x.cell.payload, x.cell.bytes, json_number(x.work_ns), x.note,
                         i + 1 < xs.size() ? "," : "");
    }
    return s + "  ],\n";
}

// The bench_common rows: per cell and executor, offload's ns per call beside Python's.
std::vector<row> result_rows(const std::vector<point>& grid) {
    std::vector<row> rows;
    for (auto& p : grid) {
        if (p.impl != "offload") continue;
        const cell_key c{p.payload, p.bytes};
        auto* py = find(grid, "python", p.exec, c, p.work_ns);
        peer pp{"python", py ? std::optional<double>(py->ns_per_call) : std::nullopt, "n/a (not measured)"};
        rows.push_back(
            {fmt::format("{}_{}_{:.0f}_{}", p.payload, p.bytes, p.work_ns, name_of(p.exec)),
             fmt::format("{}: {} {}, W {}", name_of(p.exec), p.payload, size_label(p.bytes), time_label(p.work_ns)),
             kind::time_ns,
             p.ns_per_call,
             {pp},
             std::string(),
             0.0});
    }
    return rows;
}

// --- running ----------------------------------------------------------------------------

// A payload of `bytes` bytes (deterministic, not all zero): a vector, or a
// shared_buffer filled the same way.
std::vector<std::byte> make_bytes(std::size_t bytes) {
    std::vector<std::byte> v(bytes);
    for (std::size_t i = 0; i < bytes; ++i) v[i] = static_cast<std::byte>(i * 131 + 7);
    return v;
}

template <class Payload>
void measure_cell(offload::event_loop& loop, const config& cfg, pools p, double ns_per_iter, const Payload& payload,
                  const cell_key& c, std::vector<point>& grid) {
    // 64 MiB per call is slow enough: one call per worker at least, not two.
    const long workers = static_cast<long>(cfg.workers);
    const long min_calls = c.bytes >= 64 * MiB ? workers : 2 * workers;
    for (double w : cfg.work_ns) {
        const auto iters = static_cast<std::uint64_t>(std::max(1.0, std::round(w / ns_per_iter)));
        const std::uint64_t expect = work_fn<Payload>()(payload, iters);
        for (exec_kind e : all_execs) {
            figure f = measure(loop, cfg, p, e, payload, iters, min_calls, c.bytes, expect);
            grid.push_back({"offload", e, c.payload, c.bytes, w, f.calls, f.ns_per_call});
        }
    }
}

std::string list_arg(const auto& xs) {
    std::string s;
    for (auto x : xs) s += fmt::format(" {:.0f}", static_cast<double>(x));
    return s;
}

// The Python peer's figures as grid points (none when it did not run).
std::vector<point> python_grid(const python_result& py, const config& cfg) {
    std::vector<point> out;
    if (py.unavailable) return out;
    for (auto& c : cells_of(cfg))
        for (double w : cfg.work_ns)
            for (exec_kind e : all_execs) {
                const auto key = fmt::format("{}_{}_{:.0f}_{}", c.payload, c.bytes, w, name_of(e));
                auto ns = py.get(key + "_ns");
                auto calls = py.get(key + "_calls");
                if (ns && calls) out.push_back({"python", e, c.payload, c.bytes, w, static_cast<long>(*calls), *ns});
            }
    return out;
}

} // namespace

int main(int argc, char** argv) {
    // Spawned workers re-execute this binary: they start (and stay) here.
    offload::process_pool::worker_main(argc, argv);

    config cfg;
    if (auto stop = parse_options(argc, argv, cfg, "bench_crossover.json", false)) return *stop;
    cfg.workers = offload::available_cpus();
    if (cfg.smoke) {
        // For CI (sanitizers on a loaded machine): 2 W x (2 by value + 1 shared)
        // cells, one small batch per figure, at most 2 workers.
        cfg.work_ns = {1e3, 1e5};
        cfg.value_bytes = {0, 64 * KiB};
        cfg.shared_bytes = {64 * KiB};
        cfg.repeats = 1;
        cfg.workers = std::min<std::size_t>(cfg.workers, 2);
    }
    const auto started = bench_clock::now();

    try {
        const std::string batches =
            cfg.smoke ? std::string("SMOKE sizes, one small batch per figure")
                      : fmt::format("batches of ~{:.0f} ms, median of {} (1 where a batch takes over {:.0f} ms)",
                                    cfg.target_ms, cfg.repeats, 5 * cfg.target_ms);
        fmt::print("bench_crossover: inline vs thread_pool vs process_pool ({} workers each; Python: "
                   "ThreadPoolExecutor, ProcessPoolExecutor); {}; {} CPUs online{}\n",
                   cfg.workers, batches, ::sysconf(_SC_NPROCESSORS_ONLN), hogs_note());

        // Python first, while nothing else of ours runs (it is the slowest part).
        python_result py;
        if (cfg.python) {
            fmt::print("running the Python asyncio peer...\n");
            py = run_python("bench_crossover.py",
                            fmt::format("--work-ns{} --bytes{} --shared-bytes{} --workers {} --target-ms {} "
                                        "--max-calls {} --max-batch-bytes {} --repeats {}{}",
                                        list_arg(cfg.work_ns), list_arg(cfg.value_bytes), list_arg(cfg.shared_bytes),
                                        cfg.workers, cfg.target_ms, cfg.max_calls, cfg.max_batch_bytes, cfg.repeats,
                                        cfg.smoke ? " --smoke" : ""),
                            argv[0]);
            if (py.unavailable) fmt::print("Python peer: {}\n", *py.unavailable);
        } else {
            py.unavailable = "n/a (--no-python)";
        }

        fmt::print("running offload...\n");
        const double ns_per_iter = calibrate(cfg.smoke ? 1e6 : 5e6);
        std::vector<point> grid;
        {
            offload::event_loop loop;
            // The process pool before the thread pool: its forkserver must start
            // while this process has no other threads.
            offload::process_pool process({.workers = cfg.workers});
            offload::thread_pool thread({.workers = cfg.workers});
            const pools p{process, thread};
            for (auto b : cfg.value_bytes) {
                const auto payload = make_bytes(b);
                measure_cell(loop, cfg, p, ns_per_iter, payload, {"value", b}, grid);
            }
            for (auto b : cfg.shared_bytes) {
                offload::shared_buffer payload(b);
                const auto bytes = make_bytes(b);
                std::memcpy(payload.data(), bytes.data(), b);
                measure_cell(loop, cfg, p, ns_per_iter, payload, {"shared", b}, grid);
            }
        }
        auto py_points = python_grid(py, cfg);
        grid.insert(grid.end(), py_points.begin(), py_points.end());

        std::vector<crossover> xs;
        for (const char* impl : {"offload", "python"})
            for (exec_kind e : {exec_kind::thread, exec_kind::process})
                for (auto& c : cells_of(cfg)) {
                    auto x = find_crossover(grid, cfg, impl, e, c);
                    if (!x.note.empty()) xs.push_back(std::move(x));
                }

        fmt::print("\nhogs: {} busy-loop process{} beside every column\n", hog_count(), hog_count() == 1 ? "" : "es");
        fmt::print("time per call (wall time of a batch / its calls); (x): speed-up over inline, inline time / "
                   "executor time (above 1: offloading pays)\n\n");
        print_grid(grid, cfg);
        fmt::print("\ncrossover: the smallest compute per call W at which the executor beats inline (log-W "
                   "interpolation between grid points)\n\n");
        print_crossovers(xs, cfg);
        fmt::print("\nW is CPU time, the spin calibrated on the thread CPU clock: C++ {:.3g} ns/iteration, Python {}\n",
                   ns_per_iter,
                   py.get("ns_per_iter") ? fmt::format("{:.3g} ns/iteration", *py.get("ns_per_iter")) : "n/a");
        fmt::print("by value: C++ copies the vector into each pooled call (and a process pool through its "
                   "mailbox); Python's threads share the bytes, its processes pickle them.\n"
                   "shared: C++ hands a shared_buffer (memfd) handle; Python passes a SharedMemory name "
                   "that each process call attaches (threads read the segment in place).\n");

        write_json(cfg.json_path, "bench_crossover", cfg.smoke, cfg.repeats, result_rows(grid),
                   fmt::format("  \"workers\": {},\n  \"target_ms\": {},\n  \"ns_per_iter\": {},\n"
                               "  \"python_ns_per_iter\": {},\n  \"python_seconds\": {},\n{}{}",
                               cfg.workers, cfg.target_ms, json_number(ns_per_iter), json_number(py.get("ns_per_iter")),
                               json_number(py.get("seconds")), grid_json(grid), crossover_json(xs)));
        fmt::print("JSON: {}\ntotal time: {:.1f} s (Python peer {})\n", cfg.json_path, ns_since(started) / 1e9,
                   py.get("seconds") ? fmt::format("{:.1f} s", *py.get("seconds")) : std::string("n/a"));
    } catch (const std::exception& e) {
        fmt::print(stderr, "bench_crossover: {}\n", e.what());
        return 1;
    }
    return 0;
}
