// http_service.cpp — a small HTTP/1.1 service on offload, the program to copy
// for a real one: one task per connection (start_server), keep-alive, bounded
// request heads (431), CPU work offloaded under a semaphore and a timeout,
// the call cancelled when its client hangs up, /metrics in Prometheus format,
// and a graceful SIGTERM: stop accepting, drain, cancel what is left, exit 0.
//
//   http_service [--host H] [--port P] [--mode inline|thread|process] [--workers N]
//                [--nice N] [--max-inflight N] [--timeout-ms T] [--grace-ms G]
//                [--start fork|spawn|forkserver]
//   curl 'http://127.0.0.1:8080/cpu?n=20000000'    # about 20 ms of one core
#include "http_request.hpp"

#include <offload/offload.hpp>

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <list>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

using offload::task;
using namespace std::chrono_literals;

// --- the CPU work ------------------------------------------------------------------

/// xorshift64, n steps: about 1 ns each, so n = 20'000'000 is ~20 ms of one core.
std::uint64_t cpu_work(std::uint64_t n) {
    std::uint64_t x = 88172645463325252ull;
    for (std::uint64_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

/// The same for a thread pool. A thread cannot be killed, so it checks its stop
/// token every 2^20 steps (about a millisecond): a cancelled or timed-out call
/// frees its thread at once. A worker process needs no token: it is killed.
std::uint64_t cpu_work_stoppable(std::stop_token stop, std::uint64_t n) {
    std::uint64_t x = 88172645463325252ull;
    for (std::uint64_t i = 0; i < n; ++i) {
        if ((i & 0xfffff) == 0 && stop.stop_requested()) return 0; // nobody reads it any more
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

/// Runs in every new worker process: Ctrl-C (SIGINT to the whole process group)
/// and a SIGTERM sent to every process of the service must not kill the workers
/// under requests we are draining. The parent shuts the pool down when it is done.
void ignore_stop_signals() {
    std::signal(SIGINT, SIG_IGN);
    std::signal(SIGTERM, SIG_IGN);
}

// --- command line --------------------------------------------------------------------

enum class mode { inline_, thread, process };

struct options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    mode where = mode::process;
    // One core left to the loop: with every core busy computing, /ping waits for a time slice.
    std::size_t workers = std::max<std::size_t>(1, offload::available_cpus() - 1);
    int nice = 0;
    std::size_t max_inflight = 0; // 0: 4 x workers
    std::chrono::milliseconds timeout = 2000ms;
    std::chrono::milliseconds grace = 5000ms;
    offload::start_method start = offload::start_method::forkserver;
};

constexpr std::string_view usage =
    "usage: http_service [--host H] [--port P] [--mode inline|thread|process] [--workers N] [--nice N]\n"
    "                    [--max-inflight N] [--timeout-ms T] [--grace-ms G] [--start fork|spawn|forkserver]\n";

std::uint64_t parse_number(std::string_view flag, std::string_view v, std::uint64_t lo, std::uint64_t hi) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || n < lo || n > hi)
        throw std::invalid_argument(fmt::format("{} wants a whole number from {} to {}, not '{}'", flag, lo, hi, v));
    return n;
}

options parse_args(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view flag = argv[i];
        if (flag == "--help" || flag == "-h") throw std::invalid_argument("");
        if (i + 1 >= argc) throw std::invalid_argument(fmt::format("{} needs a value", flag));
        std::string_view v = argv[++i];
        if (flag == "--host")
            o.host = v;
        else if (flag == "--port")
            o.port = static_cast<std::uint16_t>(parse_number(flag, v, 0, 65535));
        else if (flag == "--workers")
            o.workers = parse_number(flag, v, 1, 1024);
        else if (flag == "--nice")
            o.nice = static_cast<int>(parse_number(flag, v, 0, 19));
        else if (flag == "--max-inflight")
            o.max_inflight = parse_number(flag, v, 1, 1'000'000);
        else if (flag == "--timeout-ms")
            o.timeout = std::chrono::milliseconds(parse_number(flag, v, 1, 86'400'000));
        else if (flag == "--grace-ms")
            o.grace = std::chrono::milliseconds(parse_number(flag, v, 0, 86'400'000));
        else if (flag == "--mode") {
            if (v == "inline")
                o.where = mode::inline_;
            else if (v == "thread")
                o.where = mode::thread;
            else if (v == "process")
                o.where = mode::process;
            else
                throw std::invalid_argument(fmt::format("--mode is inline, thread or process, not '{}'", v));
        } else if (flag == "--start") {
            if (v == "fork")
                o.start = offload::start_method::fork;
            else if (v == "spawn")
                o.start = offload::start_method::spawn;
            else if (v == "forkserver")
                o.start = offload::start_method::forkserver;
            else
                throw std::invalid_argument(fmt::format("--start is fork, spawn or forkserver, not '{}'", v));
        } else
            throw std::invalid_argument(fmt::format("unknown option '{}'", flag));
    }
    if (o.max_inflight == 0) o.max_inflight = 4 * o.workers;
    return o;
}

// --- the service -----------------------------------------------------------------------

struct client {
    offload::task_ref task; // the connection's task, to cancel it at shutdown
    bool idle = true;       // waiting for its next request
};

struct service {
    service(const options& o, offload::process_pool* p, offload::thread_pool* t)
        : opt(o), procs(p), threads(t), inflight(o.max_inflight) {}

    const options& opt;
    offload::process_pool* procs;  // --mode process
    offload::thread_pool* threads; // --mode thread
    offload::semaphore inflight;   // offloads running or queued; more wait for a permit
    std::list<client> clients;
    bool stopping = false;
    std::size_t busy = 0;   // requests being answered
    offload::event drained; // set once stopping and no request is being answered
    // Request counters for /metrics, by status.
    static constexpr std::array<int, 11> statuses{200, 400, 404, 405, 413, 431, 500, 502, 503, 504, 505};
    std::array<std::uint64_t, statuses.size()> responses{};
    std::uint64_t abandoned = 0; // /cpu calls cancelled because their client hung up
    offload::metrics metrics;    // the pool, the loop and its lag, for /metrics

    void count(int status) {
        for (std::size_t i = 0; i < statuses.size(); ++i)
            if (statuses[i] == status) ++responses[i];
    }
    // Our counters join the library's families (the pool, the loop, its lag) in /metrics.
    void add_metrics() {
        for (std::size_t i = 0; i < statuses.size(); ++i)
            metrics.add_counter("http_responses", "Responses sent, by status",
                                [this, i] { return double(responses[i]); }, {{"status", std::to_string(statuses[i])}});
        metrics.add_counter("http_cpu_abandoned", "/cpu calls cancelled because the client hung up",
                            [this] { return double(abandoned); });
    }
};

// Where /cpu runs: the one switch this example exists to show.
task<std::uint64_t> compute(service& svc, std::uint64_t n) {
    switch (svc.opt.where) {
    case mode::inline_: // on the loop itself: every other client waits meanwhile
        co_return cpu_work(n);
    case mode::thread: // a thread of the pool; the loop stays free
        co_return co_await offload::run_in_executor(*svc.threads, cpu_work_stoppable, n);
    case mode::process: // a worker process: killed on timeout or cancel; a crash fails only this call
        co_return co_await offload::run_in_executor(*svc.procs, cpu_work, n);
    }
    throw std::logic_error("unknown mode");
}

// At most --max-inflight offloads at once, each within --timeout-ms. A timed-out
// call is cancelled: a queued call never runs, a running worker process is killed.
task<std::uint64_t> offloaded(service& svc, std::uint64_t n) {
    auto permit = co_await svc.inflight.scoped_acquire();
    co_return co_await offload::wait_for(compute(svc, n), svc.opt.timeout);
}

// Thrown when the client hung up while its request was being computed.
struct client_gone : std::runtime_error {
    client_gone() : std::runtime_error("the client closed the connection") {}
};

// Runs `call`, racing it against the client hanging up: if the client goes
// first, the watcher's error cancels the call (the task group cancels the task
// that owns it) and is rethrown; if the call ends first, the watcher is cancelled.
task<std::uint64_t> unless_client_leaves(offload::stream& s, task<std::uint64_t> call) {
    auto race = [&](offload::task_group& tg) -> task<std::uint64_t> {
        auto watcher = [](offload::stream* s) -> task<> {
            co_await s->wait_peer_closed();
            throw client_gone();
        };
        auto hangup = tg.create_task(watcher(&s));
        std::uint64_t v = co_await std::move(call);
        hangup.cancel();
        co_return v;
    };
    co_return co_await offload::with_task_group(race);
}

struct reply {
    int status = 200;
    std::string body;
    std::string_view type = "text/plain; charset=utf-8";
    std::string_view extra_headers = {};
};

task<reply> cpu_endpoint(service& svc, offload::stream& s, std::string_view query) {
    auto n = http::query_uint(query, "n", 10'000'000'000ull);
    if (!n) co_return reply{400, "/cpu needs n, a whole number from 0 to 10^10: /cpu?n=1000000\n"};
    try {
        std::uint64_t v = co_await unless_client_leaves(s, offloaded(svc, *n));
        co_return reply{200, fmt::format("{}\n", v)};
    } catch (const offload::timeout_error&) {
        co_return reply{504, fmt::format("the computation took longer than {} ms\n", svc.opt.timeout.count())};
    } catch (const offload::worker_crashed& e) {
        co_return reply{502, fmt::format("the worker computing this died ({}); the pool replaced it\n", e.what())};
    } catch (const offload::executor_closed&) {
        co_return reply{503, "shutting down\n"};
    } catch (const offload::broken_executor& e) { // the pool cannot run calls any more (worker_crashed is caught above)
        co_return reply{503, fmt::format("the worker pool is broken: {}\n", e.what())};
    } catch (const client_gone&) {
        ++svc.abandoned;
        throw; // nobody left to answer
    }
}

task<reply> answer(service& svc, offload::stream& s, const http::request& req) {
    const bool known = req.path == "/ping" || req.path == "/cpu" || req.path == "/metrics";
    if (!known) co_return reply{404, "unknown path: try /ping, /cpu?n=1000000 or /metrics\n"};
    if (req.method != "GET") co_return reply{405, "only GET is supported\n", "text/plain", "Allow: GET\r\n"};
    if (svc.stopping) co_return reply{503, "shutting down\n"};
    if (req.path == "/ping") co_return reply{200, "pong\n"};
    if (req.path == "/cpu") co_return co_await cpu_endpoint(svc, s, req.query);
    co_return reply{200, svc.metrics.prometheus(), offload::prometheus_content_type};
}

// One task per connection: read a head, answer it, until the client or we close.
task<> serve_client(service& svc, offload::stream s) {
    auto me = svc.clients.insert(svc.clients.end(), client{offload::current_task()});
    struct forget {
        service& svc;
        std::list<client>::iterator me;
        ~forget() { svc.clients.erase(me); }
    } forget_me{svc, me};

    try {
        for (bool keep_alive = true; keep_alive && !svc.stopping;) {
            std::string head;
            bool too_large = false;
            me->idle = true;
            try {
                head = co_await s.read_until("\r\n\r\n"); // bounded by server_options::limit
            } catch (const offload::incomplete_read_error&) {
                break; // the client closed the connection (between requests, or mid-head)
            } catch (const offload::limit_overrun_error&) {
                too_large = true;
            }
            if (too_large) {
                svc.count(431);
                s.write(http::response(431, "the request head is over 8 KiB\n", false));
                co_await s.drain();
                break;
            }
            me->idle = false;
            ++svc.busy;
            struct done_guard {
                service& svc;
                ~done_guard() {
                    if (--svc.busy == 0 && svc.stopping) svc.drained.set();
                }
            } done{svc};

            auto parsed = http::parse_head(head);
            reply r;
            if (parsed.status != 0) {
                r = reply{parsed.status, fmt::format("{}\n", parsed.reason)};
            } else {
                try {
                    r = co_await answer(svc, s, parsed.req);
                } catch (const client_gone&) {
                    break;
                }
            }
            keep_alive = parsed.req.keep_alive && !svc.stopping;
            svc.count(r.status);
            s.write(http::response(r.status, r.body, keep_alive, r.type, r.extra_headers));
            co_await s.drain();
        }
    } catch (const offload::connection_reset_error&) {
        // The client went away while we wrote to it: nothing left to do.
    }
    s.close();
}

task<int> serve(const options& opt, offload::process_pool* procs) {
    auto& loop = offload::event_loop::current();
    // SIGTERM / SIGINT start the shutdown. Handlers first: the signals are then
    // blocked in the threads started below, so none of them is hit by one.
    offload::event stop;
    loop.add_signal_handler(SIGTERM, [&stop] { stop.set(); });
    loop.add_signal_handler(SIGINT, [&stop] { stop.set(); });

    std::optional<offload::thread_pool> threads;
    if (opt.where == mode::thread)
        threads.emplace(offload::thread_pool_options{.workers = opt.workers, .name = "cpu", .nice = opt.nice});
    service svc(opt, procs, threads ? &*threads : nullptr);

    offload::lag_monitor lag; // how late the loop serves a 1 ms timer: what /ping latency suffers from
    lag.start();
    svc.metrics.add("loop", loop);
    svc.metrics.add("loop", lag);
    if (procs) svc.metrics.add("cpu", *procs);
    if (threads) svc.metrics.add("cpu", *threads);
    svc.add_metrics();

    auto handler = [&svc](offload::stream s) { return serve_client(svc, std::move(s)); };
    auto server = co_await offload::start_server(handler, opt.host, opt.port, {.limit = http::max_head_size});
    fmt::print("listening on {}:{}\n", opt.host, server.port());
    std::fflush(stdout);

    co_await stop.wait();
    // The shutdown sequence: 1. stop accepting; 2. close idle keep-alive
    // connections; 3. let requests in flight finish within the grace period;
    // 4. cancel the rest (their offloads too: a running worker is killed).
    server.close();
    svc.stopping = true;
    std::vector<offload::task_ref> idle; // cancelled outside the walk: a task leaving erases its entry
    for (auto& c : svc.clients)
        if (c.idle) idle.push_back(c.task);
    for (auto& t : idle) t.cancel("shutting down");
    if (svc.busy > 0) {
        try {
            co_await offload::wait_for(svc.drained.wait(), opt.grace);
        } catch (const offload::timeout_error&) {
            fmt::print(stderr, "http_service: {} requests still running after the grace period; cancelling them\n",
                       svc.busy);
        }
    }
    server.close_clients();
    co_await server.wait_closed();
    lag.stop();
    loop.remove_signal_handler(SIGTERM);
    loop.remove_signal_handler(SIGINT);
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv); // first: a spawned worker runs here and never returns
    options opt;
    try {
        opt = parse_args(argc, argv);
    } catch (const std::invalid_argument& e) {
        if (*e.what()) fmt::print(stderr, "http_service: {}\n", e.what());
        fmt::print(stderr, "{}", usage);
        return 2;
    }
    // The process pool before any thread exists (its forkserver forks here).
    std::optional<offload::process_pool> procs;
    if (opt.where == mode::process)
        procs.emplace(offload::process_pool_options{
            .workers = opt.workers, .start = opt.start, .initializer = ignore_stop_signals, .nice = opt.nice});
    int rc = offload::run(serve(opt, procs ? &*procs : nullptr));
    return rc; // the pool shuts down here: its workers are idle by now
}
