// bench_loop.cpp — the event loop's hot paths, side by side with their peers:
// a hand-written raw coroutine (the floor), asio (when <asio.hpp> is present)
// and Python asyncio (benchmarks/bench_loop.py, run as a subprocess).
//
//   bench_loop [--smoke] [--no-python] [--no-asio] [--json PATH]
//
// Prints one table (offload, the peers, the cost ratios, the target and whether
// it is met) and writes the same figures as JSON (default ./bench_loop.json).
// Every figure is the median of a few repeats. Ratios are always
// "offload cost / peer cost": below 1 means offload is faster.
// g++ 12 at -O2 reports a false -Wuse-after-free in callback_timer::unref()
// (event_loop.hpp) once call_later(...) + cancel() + ~timer_handle are inlined
// into a loop: cancel() drops the heap's reference, the handle's destructor the
// last one. Silenced for the library's lines only; reported upstream.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif
#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif

#include "bench_common.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

#if OFFLOAD_HAVE_ASIO
#include <asio.hpp>
#endif

namespace {

using namespace std::chrono_literals;

using namespace offload_bench;

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(fmt::format("bench_loop: self-check failed: {}", what));
}

struct config : options {
    int repeats = 5;
    long n_await = 10'000'000;    // task create+await
    long n_post = 2'000'000;      // call_soon / asio::post
    long n_timers = 200'000;      // call_later + cancel
    long n_pingpong = 1'000'000;  // sleep(0) yields per task
    long n_spawn = 500'000;       // create_task + await
    long n_python = 100'000;      // Python's --n (it is ~100x slower)
};

// ---------------------------------------------------------------------------
// 1. Trivial task create+await
// ---------------------------------------------------------------------------

// The floor: a minimal lazy task with symmetric transfer and nothing else (no
// exception slot, no cancellation, no checks).
struct raw_task {
    struct promise_type {
        int value = 0;
        std::coroutine_handle<> continuation;

        raw_task get_return_object() noexcept {
            return raw_task{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        struct final_awaiter {
            bool await_ready() const noexcept { return false; }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) const noexcept {
                auto c = h.promise().continuation;
                return c ? c : std::noop_coroutine();
            }
            void await_resume() const noexcept {}
        };
        final_awaiter final_suspend() const noexcept { return {}; }
        void return_value(int v) noexcept { value = v; }
        void unhandled_exception() const noexcept { std::terminate(); }
    };

    explicit raw_task(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
    raw_task(raw_task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    raw_task& operator=(raw_task&&) = delete;
    ~raw_task() {
        if (h_) h_.destroy();
    }

    struct awaiter {
        std::coroutine_handle<promise_type> h;
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> c) const noexcept {
            h.promise().continuation = c;
            return h;
        }
        int await_resume() const noexcept { return h.promise().value; }
    };
    awaiter operator co_await() const noexcept { return {h_}; }

    std::coroutine_handle<promise_type> h_;
};

raw_task raw_leaf(int i) { co_return i; }

raw_task raw_outer(long n, double* ns_per_op) {
    long sum = 0;
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) sum += co_await raw_leaf(static_cast<int>(i & 1));
    *ns_per_op = ns_since(t0) / static_cast<double>(n);
    do_not_optimize(sum);
    co_return static_cast<int>(sum != n / 2);
}

double bench_raw_await(long n) {
    double ns = 0;
    raw_task t = raw_outer(n, &ns);
    t.h_.resume(); // runs to completion: every await inside completes synchronously
    check(t.h_.done() && t.h_.promise().value == 0, "raw await sum");
    return ns;
}

offload::task<int> off_leaf(int i) { co_return i; }

offload::task<double> off_outer(long n) {
    long sum = 0;
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) sum += co_await off_leaf(static_cast<int>(i & 1));
    double ns = ns_since(t0) / static_cast<double>(n);
    do_not_optimize(sum);
    check(sum == n / 2, "offload await sum");
    co_return ns;
}

double bench_offload_await(long n) { return offload::run(off_outer(n)); }

// create_task + co_await of its handle (a scheduled task, asyncio.create_task).
offload::task<double> off_spawn_outer(long n) {
    long sum = 0;
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) sum += co_await offload::create_task(off_leaf(1));
    double ns = ns_since(t0) / static_cast<double>(n);
    check(sum == n, "create_task sum");
    co_return ns;
}

double bench_offload_spawn(long n, bool debug) {
    offload::event_loop loop;
    loop.set_debug(debug);
    return loop.run_until_complete(off_spawn_outer(n));
}

// ---------------------------------------------------------------------------
// 2. call_soon throughput (and asio::post)
// ---------------------------------------------------------------------------

// `warm`: time a second burst on the same loop (its ready queue already grown);
// otherwise a fresh loop, whose queue grows (and page-faults) during the burst.
double bench_offload_fanout(long n, bool debug, bool warm = false) {
    offload::event_loop loop;
    loop.set_debug(debug);
    long count = 0;
    if (warm) {
        for (long i = 0; i < n; ++i) loop.call_soon([&count] { ++count; });
        loop.call_soon([&loop] { loop.stop(); });
        loop.run_forever();
        count = 0;
    }
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) loop.call_soon([&count] { ++count; });
    loop.call_soon([&loop] { loop.stop(); });
    loop.run_forever();
    double ns = ns_since(t0);
    do_not_optimize(count);
    check(count == n, "call_soon fan-out count");
    return static_cast<double>(n) / ns * 1e9;
}

struct offload_chain {
    offload::event_loop* loop;
    long* count;
    long n;
    void operator()() const {
        if (++*count < n)
            loop->call_soon(*this);
        else
            loop->stop();
    }
};

double bench_offload_chain(long n, bool debug) {
    offload::event_loop loop;
    loop.set_debug(debug);
    long count = 0;
    auto t0 = bench_clock::now();
    loop.call_soon(offload_chain{&loop, &count, n});
    loop.run_forever();
    double ns = ns_since(t0);
    do_not_optimize(count);
    check(count == n, "call_soon chain count");
    return static_cast<double>(n) / ns * 1e9;
}

#if OFFLOAD_HAVE_ASIO
double bench_asio_fanout(long n, bool warm = false) {
    asio::io_context ctx{1};
    long count = 0;
    if (warm) {
        for (long i = 0; i < n; ++i) asio::post(ctx, [&count] { ++count; });
        ctx.run();
        ctx.restart();
        count = 0;
    }
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) asio::post(ctx, [&count] { ++count; });
    ctx.run();
    double ns = ns_since(t0);
    do_not_optimize(count);
    check(count == n, "asio fan-out count");
    return static_cast<double>(n) / ns * 1e9;
}

struct asio_chain {
    asio::io_context* ctx;
    long* count;
    long n;
    void operator()() const {
        if (++*count < n) asio::post(*ctx, *this);
    }
};

double bench_asio_chain(long n) {
    asio::io_context ctx{1};
    long count = 0;
    auto t0 = bench_clock::now();
    asio::post(ctx, asio_chain{&ctx, &count, n});
    ctx.run();
    double ns = ns_since(t0);
    do_not_optimize(count);
    check(count == n, "asio chain count");
    return static_cast<double>(n) / ns * 1e9;
}
#endif

// ---------------------------------------------------------------------------
// 3. Timer schedule + cancel
// ---------------------------------------------------------------------------

// Schedule all, then cancel all; the handles are released inside the timing.
double bench_offload_timers_bulk(long n) {
    offload::event_loop loop;
    std::vector<offload::timer_handle> hs;
    hs.reserve(static_cast<std::size_t>(n));
    long fired = 0;
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) hs.push_back(loop.call_later(1s, [&fired] { ++fired; }));
    for (auto& h : hs) h.cancel();
    hs.clear();
    double ns = ns_since(t0);
    check(loop.scheduled_timers() == 0 && fired == 0, "offload timers all cancelled");
    return ns / static_cast<double>(n);
}

double bench_offload_timers_interleaved(long n) {
    offload::event_loop loop;
    long fired = 0;
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) loop.call_later(1s, [&fired] { ++fired; }).cancel();
    double ns = ns_since(t0);
    check(loop.scheduled_timers() == 0 && fired == 0, "offload timers all cancelled");
    return ns / static_cast<double>(n);
}

#if OFFLOAD_HAVE_ASIO
// asio runs a cancelled wait's handler (operation_aborted): draining those
// (ctx.run) and destroying the timers are inside the timing, as asio frees the
// operation only then.
double bench_asio_timers_bulk(long n) {
    asio::io_context ctx{1};
    std::vector<asio::steady_timer> ts;
    ts.reserve(static_cast<std::size_t>(n));
    long aborted = 0;
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        ts.emplace_back(ctx);
        ts.back().expires_after(1s);
        ts.back().async_wait(
            [&aborted](const asio::error_code& ec) { aborted += ec == asio::error::operation_aborted; });
    }
    for (auto& t : ts) t.cancel();
    ctx.run();
    ts.clear();
    double ns = ns_since(t0);
    check(aborted == n, "asio timers all aborted");
    return ns / static_cast<double>(n);
}

double bench_asio_timers_interleaved(long n) {
    asio::io_context ctx{1};
    long aborted = 0;
    auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        asio::steady_timer t(ctx);
        t.expires_after(1s);
        t.async_wait([&aborted](const asio::error_code& ec) { aborted += ec == asio::error::operation_aborted; });
        t.cancel();
    }
    ctx.run();
    double ns = ns_since(t0);
    check(aborted == n, "asio timers all aborted");
    return ns / static_cast<double>(n);
}
#endif

// ---------------------------------------------------------------------------
// 4. Ping-pong between two tasks (each `co_await sleep(0s)`, asyncio.sleep(0))
// ---------------------------------------------------------------------------

offload::task<> yielder(long n) {
    for (long i = 0; i < n; ++i) co_await offload::sleep(0s);
}

offload::task<double> pingpong_main(long n) {
    auto t0 = bench_clock::now();
    auto a = offload::create_task(yielder(n));
    auto b = offload::create_task(yielder(n));
    co_await a;
    co_await b;
    co_return ns_since(t0) / static_cast<double>(2 * n);
}

double bench_offload_pingpong(long n, bool debug) {
    offload::event_loop loop;
    loop.set_debug(debug);
    return loop.run_until_complete(pingpong_main(n));
}

python_result run_python(const config& cfg, const char* argv0) {
    return offload_bench::run_python("bench_loop.py", fmt::format("--n {} --repeats {}", cfg.n_python, cfg.repeats),
                                     argv0);
}

void write_json(const std::string& path, const config& cfg, const std::vector<row>& rows) {
    offload_bench::write_json(path, "bench_loop", cfg.smoke, cfg.repeats, rows);
}

} // namespace

int main(int argc, char** argv) {
    config cfg;
    if (auto stop = parse_options(argc, argv, cfg, "bench_loop.json", true)) return *stop;
    if (cfg.smoke) {
        cfg.repeats = 1;
        cfg.n_await = cfg.n_post = cfg.n_timers = cfg.n_pingpong = cfg.n_spawn = 2'000;
        cfg.n_python = 500;
    }

    try {
        const int R = cfg.repeats;
        fmt::print("bench_loop: {} repeats per figure (median){}; {} CPUs online\n", R,
                   cfg.smoke ? ", SMOKE sizes" : "", ::sysconf(_SC_NPROCESSORS_ONLN));

        // Python first, while nothing else runs (it is the slowest part).
        python_result py;
        if (cfg.python) {
            fmt::print("running the Python asyncio peer...\n");
            py = run_python(cfg, argv[0]);
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
        auto asio_peer = [&]([[maybe_unused]] auto&& fn) {
            peer p{"asio", std::nullopt, asio_missing};
#if OFFLOAD_HAVE_ASIO
            if (have_asio) p.value = median_of(R, fn);
#endif
            return p;
        };
        (void)have_asio;

        std::vector<row> rows;
        fmt::print("running offload, raw coroutines and asio...\n");

        // 1. task create+await
        {
            double off = median_of(R, [&] { return bench_offload_await(cfg.n_await); });
            double raw = median_of(R, [&] { return bench_raw_await(cfg.n_await); });
            rows.push_back({"task_await",
                            "task create+await (co_await leaf())",
                            kind::time_ns,
                            off,
                            {{"raw", raw, ""}, py_peer("task_await_ns")},
                            "raw",
                            1.5});
            double spawn = median_of(R, [&] { return bench_offload_spawn(cfg.n_spawn, false); });
            rows.push_back({"create_task_await",
                            "create_task(leaf()) + co_await handle",
                            kind::time_ns,
                            spawn,
                            {py_peer("create_task_await_ns")},
                            "",
                            0});
        }

        // 2. call_soon throughput
        double fanout_off = median_of(R, [&] { return bench_offload_fanout(cfg.n_post, false); });
        double chain_off = median_of(R, [&] { return bench_offload_chain(cfg.n_post, false); });
        double fanout_warm = median_of(R, [&] { return bench_offload_fanout(cfg.n_post, false, true); });
        {
#if OFFLOAD_HAVE_ASIO
            auto af = [&] { return bench_asio_fanout(cfg.n_post); };
            auto afw = [&] { return bench_asio_fanout(cfg.n_post, true); };
            auto ac = [&] { return bench_asio_chain(cfg.n_post); };
#else
            auto af = [] { return 0.0; };
            auto ac = af;
            auto afw = af;
#endif
            rows.push_back({"call_soon_fanout",
                            "call_soon throughput, N posted, new loop",
                            kind::rate,
                            fanout_off,
                            {asio_peer(af), py_peer("call_soon_fanout_per_s")},
                            "asio",
                            1.0});
            rows.push_back({"call_soon_fanout_warm",
                            "call_soon throughput, N posted, warm loop",
                            kind::rate,
                            fanout_warm,
                            {asio_peer(afw), py_peer("call_soon_fanout_per_s")},
                            "asio",
                            1.0});
            rows.push_back({"call_soon_chain",
                            "call_soon throughput, each posts the next",
                            kind::rate,
                            chain_off,
                            {asio_peer(ac), py_peer("call_soon_chain_per_s")},
                            "asio",
                            1.0});
        }

        // 3. timers
        {
            double bulk = median_of(R, [&] { return bench_offload_timers_bulk(cfg.n_timers); });
            double inter = median_of(R, [&] { return bench_offload_timers_interleaved(cfg.n_timers); });
#if OFFLOAD_HAVE_ASIO
            auto ab = [&] { return bench_asio_timers_bulk(cfg.n_timers); };
            auto ai = [&] { return bench_asio_timers_interleaved(cfg.n_timers); };
#else
            auto ab = [] { return 0.0; };
            auto ai = ab;
#endif
            rows.push_back({"timer_bulk",
                            "call_later(1s)+cancel, all then all",
                            kind::time_ns,
                            bulk,
                            {asio_peer(ab), py_peer("timer_bulk_ns")},
                            "",
                            0});
            rows.push_back({"timer_interleaved",
                            "call_later(1s)+cancel, interleaved",
                            kind::time_ns,
                            inter,
                            {asio_peer(ai), py_peer("timer_interleaved_ns")},
                            "",
                            0});
        }

        // 4. debug-mode overhead (offload column: debug on; peer: the same with debug off)
        {
            // Debug off and on alternate, sample by sample: on a shared machine,
            // measuring all of one and then all of the other compares two
            // moments of the machine's load more than the two modes (blocked:
            // 1.02-1.24x in the ping-pong; interleaved: 0.98-1.00x).
            auto on_off = [&](auto&& fn) {
                std::vector<double> off, on;
                for (int i = 0; i < R; ++i) {
                    off.push_back(fn(false));
                    on.push_back(fn(true));
                }
                return std::pair{median(std::move(off)), median(std::move(on))};
            };
            auto [pp_off, pp_on] = on_off([&](bool d) { return bench_offload_pingpong(cfg.n_pingpong, d); });
            rows.push_back({"sleep0_pingpong",
                            "ping-pong, 2 tasks co_await sleep(0s)",
                            kind::time_ns,
                            pp_off,
                            {py_peer("sleep0_pingpong_ns")},
                            "",
                            0});
            auto [fan_off, fan_on] = on_off([&](bool d) { return bench_offload_fanout(cfg.n_post, d, true); });
            auto [chain_off2, chain_on] = on_off([&](bool d) { return bench_offload_chain(cfg.n_post, d); });
            auto [spawn_off, spawn_on] = on_off([&](bool d) { return bench_offload_spawn(cfg.n_spawn, d); });
            rows.push_back({"debug_call_soon_fanout",
                            "debug on: call_soon fan-out, warm loop",
                            kind::rate,
                            fan_on,
                            {{"debug off", fan_off, ""}},
                            "debug off",
                            1.05});
            rows.push_back({"debug_call_soon_chain",
                            "debug on: call_soon chain",
                            kind::rate,
                            chain_on,
                            {{"debug off", chain_off2, ""}},
                            "debug off",
                            1.05});
            rows.push_back({"debug_sleep0_pingpong",
                            "debug on: sleep(0s) ping-pong",
                            kind::time_ns,
                            pp_on,
                            {{"debug off", pp_off, ""}},
                            "debug off",
                            1.05});
            rows.push_back({"debug_create_task_await",
                            "debug on: create_task+await",
                            kind::time_ns,
                            spawn_on,
                            {{"debug off", spawn_off, ""}},
                            "debug off",
                            1.05});
        }

        fmt::print("\n");
        print_table(rows, 2);
        fmt::print("\nratio = offload cost / peer cost (below 1: offload faster); "
                   "the 'debug on' rows compare offload with itself.\n");
        write_json(cfg.json_path, cfg, rows);
        fmt::print("JSON: {}\n", cfg.json_path);
    } catch (const std::exception& e) {
        fmt::print(stderr, "bench_loop: {}\n", e.what());
        return 1;
    }
    return 0;
}
