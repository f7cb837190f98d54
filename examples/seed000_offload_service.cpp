// seed000_offload_service.cpp — seed 000, "integrated production example":
// Python's OffloadService (a shared ProcessPoolExecutor, a semaphore, a
// per-call asyncio.timeout, BrokenExecutor handling) run in debug mode. Here
// a timeout really kills the worker (Python's cannot), a crashed worker fails
// only its own call (the pool replaces it: no rebuild), and a handler that
// forgot to offload is named by the slow-callback report.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <chrono>
#include <climits>
#include <csignal>
#include <vector>

using namespace std::chrono_literals;
using offload::task;

// Pure CPU work in a worker process. n < 0 stands for a worker killed from
// outside (the OOM killer, a bug in native code): it dies with SIGKILL.
long long cpu_kernel(int n) {
    if (n < 0) std::raise(SIGKILL);
    long long s = 0;
    for (int k = 0; k < n; ++k) s += static_cast<long long>(k) * k % 97;
    return s;
}

class offload_service {
public:
    // The pool is created with the service, before the loop starts its threads.
    offload_service(std::size_t workers, std::ptrdiff_t max_inflight)
        : pool_({.workers = workers}), sem_(max_inflight) {}

    task<long long> run(int n, std::chrono::milliseconds timeout) {
        auto permit = co_await sem_.scoped_acquire(); // backpressure on producers
        try {
            // On timeout wait_for cancels the call: the pool kills the worker
            // running it (SIGKILL) and starts a new one. No core stays busy.
            co_return co_await offload::wait_for(offload::run_in_executor(pool_, cpu_kernel, n), timeout);
        } catch (const offload::timeout_error&) {
            fmt::print("  n={}: timed out after {} ms; its worker was killed\n", n, timeout.count());
            throw;
        } catch (const offload::worker_crashed& e) {
            // crash_policy::respawn (the default): the pool already replaced
            // the worker, and only this call failed. Nothing to rebuild.
            fmt::print("  n={}: worker {} died (signal {}); only this call failed\n", n, e.pid(), e.signal());
            throw;
        }
    }

    offload::executor_stats stats() const { return pool_.stats(); }

private:
    offload::process_pool pool_;
    offload::semaphore sem_;
};

// A handler that calls CPU work inline instead of offloading it: the loop
// thread is held for 120 ms (a busy loop, so it takes as long in any build).
task<> forgot_to_offload() {
    co_await offload::sleep(1ms);
    const auto until = std::chrono::steady_clock::now() + 120ms;
    while (std::chrono::steady_clock::now() < until) {
    }
    co_await offload::sleep(1ms);
}

task<int> amain(offload_service& svc) {
    // Four good calls, one that crashes its worker, one that would run for seconds.
    const std::vector<int> ns{300'000, 600'000, -1, 900'000, INT_MAX, 1'200'000};
    std::vector<long long> expected; // the good calls' results, computed inline before debug mode is on
    for (int n : ns) expected.push_back(n < 0 || n == INT_MAX ? 0 : cpu_kernel(n));

    auto& loop = offload::event_loop::current();
    loop.set_debug(true);                     // loop.set_debug(True)
    loop.set_slow_callback_duration(50ms);    // loop.slow_callback_duration = 0.05
    loop.set_stall_report_options({.while_running = false}); // one report per slow step, when it ends
    std::vector<offload::slow_callback_report> reports; // a sink of our own: a service would count them
    loop.set_slow_callback_handler([&reports](const offload::slow_callback_report& r) { reports.push_back(r); });

    std::vector<task<long long>> calls;
    for (int n : ns) calls.push_back(svc.run(n, n == INT_MAX ? 100ms : 10'000ms));
    // return_exceptions: every call runs to its end, failures come back as values.
    auto outcomes = co_await offload::gather(offload::return_exceptions, std::move(calls));

    bool ok = true;
    for (std::size_t i = 0; i < ns.size(); ++i) {
        auto& o = outcomes[i];
        if (o.has_value()) {
            fmt::print("n={:>10}: {}\n", ns[i], o.value());
            ok = ok && o.value() == expected[i];
            continue;
        }
        try {
            std::rethrow_exception(o.error());
        } catch (const offload::timeout_error&) {
            fmt::print("n={:>10}: timeout_error\n", ns[i]);
            ok = ok && ns[i] == INT_MAX;
        } catch (const offload::worker_crashed&) {
            fmt::print("n={:>10}: worker_crashed\n", ns[i]);
            ok = ok && ns[i] < 0;
        } catch (const std::exception& e) {
            fmt::print("n={:>10}: unexpected {}\n", ns[i], e.what());
            ok = false;
        }
    }
    const auto s = svc.stats();
    fmt::print("pool: {} completed, {} crashes, {} kills, {} respawns\n", s.completed, s.crashes, s.kills, s.respawns);

    // The mistake debug mode is for: its report names the task and the two
    // awaits between which it held the loop.
    auto legacy = offload::create_task(forgot_to_offload(), "legacy_handler");
    co_await legacy;
    fmt::print("{} slow-callback report(s):\n", reports.size());
    for (const auto& r : reports) fmt::print("  {}\n", offload::format_slow_callback(r));

    if (!ok || s.crashes != 1 || s.kills != 1) {
        fmt::print("FAILED: a call did not end as expected\n");
        co_return 1;
    }
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    offload_service svc(2, 4); // 2 workers, at most 4 calls in flight
    return offload::run(amain(svc));
}
