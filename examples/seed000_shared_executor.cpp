// seed000_shared_executor.cpp — seed 000, "one shared, long-lived executor":
// Python's pool built once at startup, set with loop.set_default_executor,
// used by every coroutine and shut down once at teardown (`await
// loop.run_in_executor(None, pool.shutdown, True)`). Here several handlers
// share one process pool through offload(), and the same workers serve them all.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <vector>

using offload::task;

long long cpu_kernel(int n) {
    long long s = 0;
    for (int k = 0; k < n; ++k) s += static_cast<long long>(k) * k % 97;
    return s;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// A "request handler": it does not know which pool it uses. offload() runs
// on the loop's default executor, which amain set to the shared process pool.
task<int> handler(int id, int calls) {
    int wrong = 0;
    for (int i = 0; i < calls; ++i) {
        const int n = 100'000 + 10'000 * id + i;
        long long got = co_await offload::offload(cpu_kernel, n);
        wrong += got != cpu_kernel(n); // checked inline: cheap at this size
    }
    co_return wrong;
}

task<int> amain(offload::process_pool& pool) {
    auto& loop = offload::event_loop::current();
    loop.set_default_executor(pool); // loop.set_default_executor(ProcessPoolExecutor())

    // The first call pays for connecting to the workers; later calls reuse them.
    auto t0 = std::chrono::steady_clock::now();
    co_await offload::offload(cpu_kernel, 1);
    const double first_ms = ms_since(t0);
    const auto pids = pool.worker_pids();

    // Four handlers at once, 8 calls each, all on the same two workers.
    t0 = std::chrono::steady_clock::now();
    auto [w0, w1, w2, w3] = co_await offload::gather(handler(0, 8), handler(1, 8), handler(2, 8), handler(3, 8));
    const double all_ms = ms_since(t0);
    const bool same_workers = pool.worker_pids() == pids;
    const auto s = pool.stats();
    fmt::print("first call {:.2f} ms; then 32 calls from 4 handlers in {:.1f} ms\n", first_ms, all_ms);
    fmt::print("pool: {} workers (pids unchanged: {}), {} calls completed, {} respawns\n", s.workers, same_workers,
               s.completed, s.respawns);

    // Teardown, once: shutdown(wait) joins the workers, so run it off the loop
    // thread (to_thread uses the loop's own thread pool, not the default executor).
    co_await offload::to_thread([&pool] { pool.shutdown(/*wait=*/true); });
    bool refused = false;
    try {
        co_await offload::offload(cpu_kernel, 1);
    } catch (const offload::executor_closed&) {
        refused = true; // new work after teardown fails loudly instead of hanging
    }
    fmt::print("after shutdown: {}\n", refused ? "offload() throws executor_closed" : "offload() still ran!");

    if (w0 + w1 + w2 + w3 != 0 || !same_workers || s.completed != 33 || !refused) {
        fmt::print("FAILED: wrong results, new workers, or a call after shutdown was accepted\n");
        co_return 1;
    }
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    // Built once, before the loop and its threads exist; it lives as long as the program.
    auto t0 = std::chrono::steady_clock::now();
    offload::process_pool pool({.workers = 2});
    fmt::print("pool constructed in {:.2f} ms (paid once, not per call)\n", ms_since(t0));
    return offload::run(amain(pool));
}
