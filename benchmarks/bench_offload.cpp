// bench_offload.cpp — offloading a call to a thread pool and getting its result
// back on the loop, side by side with its peers: Python asyncio
// (benchmarks/bench_offload.py, run as a subprocess), asio (a coroutine hopping
// to an asio::thread_pool and back, when <asio.hpp> is present) and the floor
// of any blocking hand-off, an eventfd ping-pong between two threads.
//
//   bench_offload [--smoke] [--no-python] [--no-asio] [--json PATH] [--hogs N]
//
// --hogs N runs N busy-loop processes beside the whole program (Python peer
// included); the p99 rows then carry issue 9's target: a hand-off p99 at most
// asio's under the same hogs. Under hogs: 3 repeats, and only the 10k gather.
//
// Measures (1) the sequential round trip of a no-op (per-call median and p99),
// (2) the throughput of N gathered no-ops, (3) the CPU an idle pool burns.
// Prints one table (offload, the peers, the cost ratios, the targets and whether
// they are met) and writes the same figures as JSON (default ./bench_offload.json).
// Every figure is the median of a few repeats. Ratios are always
// "offload cost / peer cost": below 1 means offload is faster.
#include "bench_common.hpp"

#include <offload/event_loop.hpp>
#include <offload/gather.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/thread_pool.hpp>
#include <offload/to_thread.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#if OFFLOAD_HAVE_ASIO
// asio 1.22 turns co_await support on under clang only when it finds
// <experimental/coroutine>; libstdc++ 12 has <coroutine> (which asio then uses).
#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(ASIO_HAS_CO_AWAIT)
#define ASIO_HAS_CO_AWAIT 1
#endif
#include <asio.hpp>
#endif

namespace {

using namespace std::chrono_literals;
using namespace offload_bench;

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(fmt::format("bench_offload: self-check failed: {}", what));
}

struct config : options {
    int repeats = 5;
    long n_warmup = 500;                         // calls before any timing
    long n_seq = 20'000;                         // sequential round trips, each timed
    std::vector<long> n_gather = {10'000, 100'000}; // gathered calls
    std::chrono::milliseconds idle{1000};       // idle CPU window
    int idle_repeats = 3;
    int python_repeats = 3; // Python is the slowest part of the run
};

// The offloaded work: nothing, but a real call the compiler cannot remove.
[[gnu::noinline]] void noop() { do_not_optimize(0); }

// Per-call latencies of one repeat, in µs.
struct latency {
    double median_us = 0;
    double p99_us = 0;
};

latency summarize(std::vector<double> ns) {
    latency l;
    l.median_us = percentile(ns, 0.50) / 1e3;
    l.p99_us = percentile(ns, 0.99) / 1e3;
    return l;
}

// Median over repeats of each figure.
template <class F>
latency median_latency(int repeats, F&& fn) {
    std::vector<double> med, p99;
    for (int i = 0; i < repeats; ++i) {
        latency l = fn();
        med.push_back(l.median_us);
        p99.push_back(l.p99_us);
    }
    return {median(std::move(med)), median(std::move(p99))};
}

double process_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// ---------------------------------------------------------------------------
// offload
// ---------------------------------------------------------------------------

// pool: run_in_executor(*pool, noop); null: to_thread(noop) (the loop's default pool).
offload::task<latency> off_sequential(offload::thread_pool* pool, long warmup, long n) {
    for (long i = 0; i < warmup; ++i) {
        if (pool)
            co_await offload::run_in_executor(*pool, noop);
        else
            co_await offload::to_thread(noop);
    }
    std::vector<double> ns;
    ns.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) {
        auto t0 = bench_clock::now();
        if (pool)
            co_await offload::run_in_executor(*pool, noop);
        else
            co_await offload::to_thread(noop);
        ns.push_back(ns_since(t0));
    }
    co_return summarize(std::move(ns));
}

latency bench_offload_to_thread(const config& cfg) {
    offload::event_loop loop;
    return loop.run_until_complete(off_sequential(nullptr, cfg.n_warmup, cfg.n_seq));
}

latency bench_offload_run_in_executor(const config& cfg) {
    offload::thread_pool pool({.workers = 2});
    offload::event_loop loop;
    return loop.run_until_complete(off_sequential(&pool, cfg.n_warmup, cfg.n_seq));
}

// Like Python's asyncio.gather(*[loop.run_in_executor(ex, noop) ...]): the
// calls themselves are gathered, without a task each.
offload::task<double> off_gather(offload::thread_pool& pool, long warmup, long n) {
    for (long i = 0; i < warmup; ++i) co_await offload::run_in_executor(pool, noop);
    auto t0 = bench_clock::now();
    std::vector<offload::thread_call<void (*)()>> calls;
    calls.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) calls.push_back(offload::run_in_executor(pool, noop));
    auto done = co_await offload::gather(std::move(calls));
    double ns = ns_since(t0);
    check(done.size() == static_cast<std::size_t>(n), "offload gather count");
    co_return static_cast<double>(n) / ns * 1e9;
}

double bench_offload_gather(const config& cfg, long n) {
    offload::thread_pool pool({.workers = 2});
    offload::event_loop loop;
    return loop.run_until_complete(off_gather(pool, cfg.n_warmup, n));
}

offload::task<double> off_idle(offload::thread_pool& pool, std::chrono::milliseconds d) {
    co_await offload::run_in_executor(pool, noop);
    double c0 = process_cpu_ns();
    auto t0 = bench_clock::now();
    co_await offload::sleep(d);
    co_return (process_cpu_ns() - c0) / ns_since(t0) * 100;
}

// % of one core the whole process (loop + 2 idle workers) burns meanwhile.
double bench_offload_idle(const config& cfg) {
    offload::thread_pool pool({.workers = 2});
    offload::event_loop loop;
    return loop.run_until_complete(off_idle(pool, cfg.idle));
}

// ---------------------------------------------------------------------------
// asio: a coroutine on an io_context hopping to an asio::thread_pool and back
// ---------------------------------------------------------------------------

#if OFFLOAD_HAVE_ASIO
asio::awaitable<void> asio_hop(asio::io_context& ioc, asio::thread_pool& pool) {
    co_await asio::post(asio::bind_executor(pool, asio::use_awaitable));
    noop(); // on a pool thread
    co_await asio::post(asio::bind_executor(ioc, asio::use_awaitable));
}

// Runs `coro` on `ioc` (on this thread) until it completes; the work guard keeps
// run() from returning while the coroutine is away on the pool.
template <class Awaitable>
void asio_run(asio::io_context& ioc, Awaitable coro) {
    auto guard = asio::make_work_guard(ioc);
    std::exception_ptr failure;
    asio::co_spawn(ioc, std::move(coro), [&](std::exception_ptr e) {
        failure = e;
        guard.reset();
    });
    ioc.run();
    if (failure) std::rethrow_exception(failure);
}

asio::awaitable<void> asio_sequential(asio::io_context& ioc, asio::thread_pool& pool, long warmup, long n,
                                      latency& out) {
    for (long i = 0; i < warmup; ++i) co_await asio_hop(ioc, pool);
    std::vector<double> ns;
    ns.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) {
        auto t0 = bench_clock::now();
        co_await asio_hop(ioc, pool);
        ns.push_back(ns_since(t0));
    }
    out = summarize(std::move(ns));
}

latency bench_asio_sequential(const config& cfg) {
    asio::io_context ioc{1};
    asio::thread_pool pool(2);
    latency out;
    asio_run(ioc, asio_sequential(ioc, pool, cfg.n_warmup, cfg.n_seq, out));
    pool.join();
    return out;
}

asio::awaitable<void> asio_counted_hop(asio::io_context& ioc, asio::thread_pool& pool, long& count) {
    co_await asio_hop(ioc, pool);
    ++count; // back on the io_context thread
}

double bench_asio_gather(const config& cfg, long n) {
    asio::io_context ioc{1};
    asio::thread_pool pool(2);
    latency ignored;
    asio_run(ioc, asio_sequential(ioc, pool, cfg.n_warmup, 1, ignored));
    ioc.restart();
    long count = 0;
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) asio::co_spawn(ioc, asio_counted_hop(ioc, pool, count), asio::detached);
    // Each spawned coroutine holds work on ioc while it is away on the pool, so
    // run() returns once the last one is back.
    ioc.run();
    double ns = ns_since(t0);
    pool.join();
    check(count == n, "asio gather count");
    return static_cast<double>(n) / ns * 1e9;
}

asio::awaitable<void> asio_idle(asio::io_context& ioc, asio::thread_pool& pool, std::chrono::milliseconds d,
                                double& pct) {
    co_await asio_hop(ioc, pool);
    double c0 = process_cpu_ns();
    auto t0 = bench_clock::now();
    asio::steady_timer t(ioc, d);
    co_await t.async_wait(asio::use_awaitable);
    pct = (process_cpu_ns() - c0) / ns_since(t0) * 100;
}

double bench_asio_idle(const config& cfg) {
    asio::io_context ioc{1};
    asio::thread_pool pool(2);
    double pct = 0;
    asio_run(ioc, asio_idle(ioc, pool, cfg.idle, pct));
    pool.join();
    return pct;
}
#endif

// ---------------------------------------------------------------------------
// The floor: a blocking eventfd ping-pong between two threads
// ---------------------------------------------------------------------------

latency bench_eventfd_pingpong(const config& cfg) {
    int to_b = ::eventfd(0, EFD_CLOEXEC), to_a = ::eventfd(0, EFD_CLOEXEC);
    check(to_b >= 0 && to_a >= 0, "eventfd");
    const long total = cfg.n_warmup + cfg.n_seq;
    std::thread b([&] {
        std::uint64_t v = 0, one = 1;
        for (long i = 0; i < total; ++i) {
            if (::read(to_b, &v, sizeof v) != sizeof v) std::abort();
            noop();
            if (::write(to_a, &one, sizeof one) != sizeof one) std::abort();
        }
    });
    std::vector<double> ns;
    ns.reserve(static_cast<std::size_t>(cfg.n_seq));
    std::uint64_t v = 0, one = 1;
    for (long i = 0; i < total; ++i) {
        auto t0 = bench_clock::now();
        if (::write(to_b, &one, sizeof one) != sizeof one) std::abort();
        if (::read(to_a, &v, sizeof v) != sizeof v) std::abort();
        if (i >= cfg.n_warmup) ns.push_back(ns_since(t0));
    }
    b.join();
    ::close(to_b);
    ::close(to_a);
    return summarize(std::move(ns));
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

std::string gather_label(long n) { return n % 1000 == 0 ? fmt::format("{}k", n / 1000) : fmt::format("{}", n); }

} // namespace

int main(int argc, char** argv) {
    config cfg;
    if (auto stop = parse_options(argc, argv, cfg, "bench_offload.json", true)) return *stop;
    if (cfg.smoke) {
        cfg.repeats = cfg.idle_repeats = cfg.python_repeats = 1;
        cfg.n_warmup = 20;
        cfg.n_seq = 200;
        cfg.n_gather = {200, 1000};
        cfg.idle = 50ms;
    }

    if (cfg.hogs > 0 && !cfg.smoke) { // under hogs everything runs slower: keep the run short
        cfg.repeats = 3;
        cfg.n_gather = {10'000};
    }

    try {
        const int R = cfg.repeats;
        fmt::print("bench_offload: {} repeats per figure (median; idle CPU {}, Python {}){}; {} CPUs online{}\n", R,
                   cfg.idle_repeats, cfg.python_repeats, cfg.smoke ? ", SMOKE sizes" : "",
                   ::sysconf(_SC_NPROCESSORS_ONLN), hogs_note());

        // Python first, while nothing else runs (it is the slowest part).
        python_result py;
        if (cfg.python) {
            fmt::print("running the Python asyncio peer...\n");
            std::string gathers;
            for (long n : cfg.n_gather) gathers += fmt::format(" {}", n);
            py = run_python("bench_offload.py",
                            fmt::format("--n-seq {} --warmup {} --gather{} --repeats {}", cfg.n_seq, cfg.n_warmup,
                                        gathers, cfg.python_repeats),
                            argv[0]);
        } else {
            py.unavailable = "n/a (--no-python)";
        }
        auto py_peer = [&](std::string_view key) { return python_peer(py, key); };
#if OFFLOAD_HAVE_ASIO
        const bool have_asio = cfg.asio;
        const char* asio_missing = "n/a (--no-asio)";
#else
        const bool have_asio = false;
        const char* asio_missing = "n/a (asio not installed)";
#endif
        auto asio_peer = [&](std::optional<double> v) {
            peer p{"asio", v, v ? "" : asio_missing};
            return p;
        };

        fmt::print("running offload, asio and the eventfd floor...\n");
        std::vector<row> rows;

        // 1. Sequential round trip of a no-op.
        {
            latency to_thread = median_latency(R, [&] { return bench_offload_to_thread(cfg); });
            latency rie = median_latency(R, [&] { return bench_offload_run_in_executor(cfg); });
            latency floor = median_latency(R, [&] { return bench_eventfd_pingpong(cfg); });
            std::optional<latency> asio_lat;
#if OFFLOAD_HAVE_ASIO
            if (have_asio) asio_lat = median_latency(R, [&] { return bench_asio_sequential(cfg); });
#endif
            auto a_med = asio_lat ? std::optional<double>(asio_lat->median_us) : std::nullopt;
            auto a_p99 = asio_lat ? std::optional<double>(asio_lat->p99_us) : std::nullopt;
            const std::vector<target_spec> seq_targets = {{"python", 1.0 / 20}, {"asio", 1.0 / 5}};
            const std::vector<target_spec> p99_targets = {{"asio", 1.0}}; // issue 9: also under N = cores hogs
            rows.push_back({"to_thread_median",
                            "co_await to_thread(noop), median",
                            kind::time_us,
                            to_thread.median_us,
                            {py_peer("to_thread_median_us"), asio_peer(a_med), {"eventfd", floor.median_us, ""}},
                            seq_targets});
            rows.push_back({"to_thread_p99",
                            "co_await to_thread(noop), p99",
                            kind::time_us,
                            to_thread.p99_us,
                            {py_peer("to_thread_p99_us"), asio_peer(a_p99), {"eventfd", floor.p99_us, ""}},
                            p99_targets});
            rows.push_back({"run_in_executor_median",
                            "co_await run_in_executor(pool2, noop), median",
                            kind::time_us,
                            rie.median_us,
                            {py_peer("run_in_executor_median_us"), asio_peer(a_med), {"eventfd", floor.median_us, ""}},
                            seq_targets});
            rows.push_back({"run_in_executor_p99",
                            "co_await run_in_executor(pool2, noop), p99",
                            kind::time_us,
                            rie.p99_us,
                            {py_peer("run_in_executor_p99_us"), asio_peer(a_p99), {"eventfd", floor.p99_us, ""}},
                            p99_targets});
        }

        // 2. Throughput of N gathered no-ops.
        for (long n : cfg.n_gather) {
            double off = median_of(R, [&] { return bench_offload_gather(cfg, n); });
            std::optional<double> a;
#if OFFLOAD_HAVE_ASIO
            if (have_asio) a = median_of(R, [&] { return bench_asio_gather(cfg, n); });
#endif
            rows.push_back({fmt::format("gather_{}", n),
                            fmt::format("gather {} x run_in_executor(pool2, noop)", gather_label(n)),
                            kind::rate,
                            off,
                            {py_peer(fmt::format("gather_{}_per_s", n)), asio_peer(a)},
                            std::vector<target_spec>{{"python", 1.0 / 100}, {"asio", 1.0}}});
        }

        // 3. Idle CPU of the pool (and the loop) after one call.
        {
            const int IR = cfg.idle_repeats;
            double off = median_of(IR, [&] { return bench_offload_idle(cfg); });
            std::optional<double> a;
#if OFFLOAD_HAVE_ASIO
            if (have_asio) a = median_of(IR, [&] { return bench_asio_idle(cfg); });
#endif
            rows.push_back({"idle_cpu",
                            fmt::format("idle CPU, {} ms after one call (process)", cfg.idle.count()),
                            kind::percent,
                            off,
                            {asio_peer(a)},
                            std::vector<target_spec>{{"", 1.0}}});
        }
        (void)have_asio;

        fmt::print("\n");
        print_table(rows, 3);
        fmt::print(
            "\nratio = offload cost / peer cost (below 1: offload faster); pool2 = thread_pool({{.workers = 2}});\n"
            "asio = co_spawn on an io_context, post to an asio::thread_pool(2) and back; "
            "eventfd = blocking ping-pong between two threads (the floor of a blocking wake).\n");
        write_json(
            cfg.json_path, "bench_offload", cfg.smoke, cfg.repeats, rows,
            fmt::format("  \"n_seq\": {},\n  \"idle_ms\": {},\n  \"idle_repeats\": {},\n  \"python_repeats\": {},\n",
                        cfg.n_seq, cfg.idle.count(), cfg.idle_repeats, cfg.python_repeats));
        fmt::print("JSON: {}\n", cfg.json_path);
    } catch (const std::exception& e) {
        fmt::print(stderr, "bench_offload: {}\n", e.what());
        return 1;
    }
    return 0;
}
