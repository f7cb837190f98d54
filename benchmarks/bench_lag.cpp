// bench_lag — is the loop thread still responsive while pool workers keep
// every core busy? The lag_monitor (a 1 ms periodic timer; lateness = firing
// time minus due time) runs on the loop, first idle, then while a pool runs
// CPU-bound calls (1 ms spins) nonstop: feeder tasks on the same loop keep
// two calls per worker in flight, so the loop also handles a completion
// every ~0.5 ms. Variants: a thread_pool and a process_pool with as many
// workers as cores, with one worker fewer, and with workers at nice 10
// (thread_pool_options::nice / process_pool_options::nice), and with the
// loop's spin budget at 0 (event_loop::set_spin_budget: an idle loop that
// expects completions sleeps at once instead of spinning for 50 us).
//
// Peer: Python asyncio with ThreadPoolExecutor / ProcessPoolExecutor doing
// the same (bench_lag.py; lag from a sleep(1 ms) loop). Target: under a
// saturated pool, the loop's p99 lag stays within 1.5x the idle p99 measured
// in the same run.
//
//   bench_lag [--smoke] [--no-python] [--json PATH]
#include <offload/available_cpus.hpp>
#include <offload/event_loop.hpp>
#include <offload/lag_monitor.hpp>
#include <offload/process_pool.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>
#include <offload/thread_pool.hpp>
#include <offload/to_thread.hpp>

#include "bench_common.hpp"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
using offload::task;
using offload_bench::bench_clock;

namespace {

constexpr auto spin_time = 1ms; // one CPU-bound call
constexpr int nice_level = 10;  // the "nice" variants

// What the workers run: 1 ms of CPU. Returns something so it is not elided.
[[gnu::noinline]] long spin_1ms() {
    long n = 0;
    const auto end = bench_clock::now() + spin_time;
    while (bench_clock::now() < end) ++n;
    offload_bench::do_not_optimize(n);
    return n;
}

struct config {
    std::chrono::milliseconds duration{3000}; // sampling time per variant
    std::chrono::milliseconds warmup{200};
};

struct result {
    offload::lag_stats lag;
    double calls_per_s = 0;
};

// Keeps submitting spin_1ms to `pool` until `stop`.
template <class Pool>
task<> feeder(Pool& pool, const bool& stop, long& calls) {
    while (!stop) {
        co_await offload::run_in_executor(pool, spin_1ms);
        ++calls;
    }
}

// Samples the loop's lag for `cfg.duration` while `inflight` feeders keep
// `pool` busy (none when `pool` is null: the idle loop).
template <class Pool>
task<result> sample(Pool* pool, std::size_t inflight, bool loop_spins, const config& cfg) {
    if (!loop_spins) offload::event_loop::current().set_spin_budget(0ns);
    bool stop = false;
    long calls = 0;
    std::vector<offload::task_handle<void>> feeders;
    if (pool)
        for (std::size_t i = 0; i < inflight; ++i) feeders.push_back(offload::create_task(feeder(*pool, stop, calls)));
    co_await offload::sleep(cfg.warmup);
    const long calls0 = calls;
    offload::lag_monitor mon(1ms);
    mon.start();
    const auto t0 = bench_clock::now();
    co_await offload::sleep(cfg.duration);
    result r;
    r.lag = mon.stats();
    mon.stop();
    r.calls_per_s = static_cast<double>(calls - calls0) /
                    std::chrono::duration<double>(bench_clock::now() - t0).count();
    stop = true;
    for (auto& f : feeders) co_await f;
    co_return r;
}

result run_idle(const config& cfg) { return offload::run(sample<offload::thread_pool>(nullptr, 0, true, cfg)); }

result run_threads(std::size_t workers, int nice, bool loop_spins, const config& cfg) {
    offload::thread_pool pool({.workers = workers, .max_queued = 0, .name = "lag", .nice = nice});
    return offload::run(sample(&pool, 2 * workers, loop_spins, cfg));
}

result run_processes(std::size_t workers, int nice, bool loop_spins, const config& cfg) {
    offload::process_pool pool({.workers = workers, .nice = nice});
    return offload::run(sample(&pool, 2 * workers, loop_spins, cfg));
}

double us(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e3; }

} // namespace

int main(int argc, char** argv) {
    // Spawned or forkserver workers re-enter here.
    offload::process_pool::worker_main(argc, argv);

    offload_bench::options opt;
    if (auto rc = offload_bench::parse_options(argc, argv, opt, "bench_lag.json", false)) return *rc;
    config cfg;
    if (opt.smoke) {
        cfg.duration = 200ms;
        cfg.warmup = 50ms;
    }
    const std::size_t cores = offload::available_cpus();

    struct variant {
        std::string key, label;
        bool process;
        std::size_t workers;
        int nice;
        bool loop_spins; // false: the loop's spin budget is 0 (it sleeps at once)
        std::optional<result> r;
    };
    std::vector<variant> vs;
    for (bool process : {false, true}) {
        const char* kind = process ? "processes" : "threads";
        const char* pool = process ? "process_pool" : "thread_pool";
        vs.push_back({fmt::format("{}_cores", kind), fmt::format("{} x{} (= cores)", pool, cores), process, cores, 0,
                      true, std::nullopt});
        vs.push_back({fmt::format("{}_cores_loop_nospin", kind), fmt::format("{} x{}, loop spin budget 0", pool, cores),
                      process, cores, 0, false, std::nullopt});
        vs.push_back({fmt::format("{}_cores_nice", kind), fmt::format("{} x{}, nice {}", pool, cores, nice_level),
                      process, cores, nice_level, true, std::nullopt});
        if (cores > 1)
            vs.push_back({fmt::format("{}_cores_minus_1", kind), fmt::format("{} x{} (cores - 1)", pool, cores - 1),
                          process, cores - 1, 0, true, std::nullopt});
    }

    offload_bench::python_result py;
    if (opt.python) {
        fmt::print("running the Python asyncio peer...\n");
        py = offload_bench::run_python("bench_lag.py",
                                       fmt::format("--duration-ms {} --warmup-ms {} --workers {} --nice {}",
                                                   cfg.duration.count(), cfg.warmup.count(), cores, nice_level),
                                       argv[0]);
    } else {
        py.unavailable = "n/a (--no-python)";
    }

    fmt::print("running offload: idle, then {} pool variants of {} ms each...\n", vs.size(), cfg.duration.count());
    const result idle = run_idle(cfg);
    for (auto& v : vs)
        v.r = v.process ? run_processes(v.workers, v.nice, v.loop_spins, cfg)
                        : run_threads(v.workers, v.nice, v.loop_spins, cfg);

    using offload_bench::kind;
    using offload_bench::peer;
    std::vector<offload_bench::row> rows;
    auto py_peer = [&](const std::string& key) {
        return peer{"asyncio", py.get(key), py.unavailable.value_or("n/a (missing)")};
    };
    struct stat_of {
        const char* name;
        std::chrono::nanoseconds offload::lag_stats::*field;
    };
    const stat_of stats[] = {
        {"p50", &offload::lag_stats::p50}, {"p99", &offload::lag_stats::p99}, {"max", &offload::lag_stats::max}};
    for (auto& s : stats)
        rows.emplace_back(fmt::format("idle_{}_us", s.name), fmt::format("idle loop, lag {}", s.name), kind::time_us,
                          us(idle.lag.*s.field), std::vector<peer>{py_peer(fmt::format("idle_{}_us", s.name))}, "", 0);
    for (auto& v : vs) {
        for (auto& s : stats) {
            const bool p99 = std::string_view(s.name) == "p99";
            std::vector<offload_bench::target_spec> targets;
            if (p99) targets.push_back({"idle", 1.5});
            rows.emplace_back(fmt::format("{}_{}_us", v.key, s.name), fmt::format("{}, lag {}", v.label, s.name),
                              kind::time_us, us(v.r->lag.*s.field),
                              std::vector<peer>{{"idle", us(idle.lag.*s.field), ""},
                                                py_peer(fmt::format("{}_{}_us", v.key, s.name))},
                              std::move(targets));
        }
    }

    fmt::print("\nbench_lag: loop lag (lag_monitor, 1 ms timer) while pool workers run 1 ms CPU spins nonstop; "
               "{} CPUs, {} ms per variant\n",
               cores, cfg.duration.count());
    offload_bench::print_table(rows, 2);
    fmt::print("\ncalls completed per second (offload):");
    for (auto& v : vs) fmt::print(" {} {:.0f};", v.key, v.r->calls_per_s);
    fmt::print("\nratio = offload cost / peer cost; 'idle' is this loop idle in the same run (target: p99 <= 1.5x "
               "idle).\n");
    std::string extra = fmt::format("  \"duration_ms\": {},\n  \"cores\": {},\n", cfg.duration.count(), cores);
    for (auto& v : vs) extra += fmt::format("  \"{}_calls_per_s\": {:.0f},\n", v.key, v.r->calls_per_s);
    offload_bench::write_json(opt.json_path, "bench_lag", opt.smoke, 1, rows, extra);
    return 0;
}
