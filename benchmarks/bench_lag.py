#!/usr/bin/env python3
"""bench_lag.py — the Python asyncio peer of bench_lag.cpp.

Measures the loop's lag (lateness of `await asyncio.sleep(0.001)`) while the
loop is idle, then while a ThreadPoolExecutor or ProcessPoolExecutor runs
1 ms CPU spins nonstop (two calls in flight per worker, fed from the loop),
with as many workers as cores, at nice N, and with one worker fewer. Prints
one flat JSON object: <variant>_{p50,p99,max}_us.

    python3 benchmarks/bench_lag.py --duration-ms 3000 --warmup-ms 200 --workers 2 --nice 10
"""

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import threading
import time

SPIN_S = 0.001


def spin_1ms():
    n = 0
    end = time.perf_counter() + SPIN_S
    while time.perf_counter() < end:
        n += 1
    return n


def nice_thread(n):
    # Linux keeps a niceness per thread, as thread_pool_options::nice sets it.
    tid = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + n))


def nice_process(n):
    os.nice(n)


def percentile(values, q):
    v = sorted(values)
    rank = max(1, math.ceil(q * len(v)))
    return v[min(len(v), rank) - 1]


async def sample(pool, inflight, duration_s, warmup_s):
    loop = asyncio.get_running_loop()
    stop = False

    async def feeder():
        while not stop:
            await loop.run_in_executor(pool, spin_1ms)

    feeders = [asyncio.create_task(feeder()) for _ in range(inflight)] if pool else []
    await asyncio.sleep(warmup_s)
    late = []
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        late.append(max(0.0, time.perf_counter() - t0 - 0.001) * 1e6)
    stop = True
    await asyncio.gather(*feeders)
    return late


def run(make_pool, workers, duration_s, warmup_s):
    if make_pool is None:
        return asyncio.run(sample(None, 0, duration_s, warmup_s))
    with make_pool() as pool:
        # Start every worker before sampling (a ProcessPoolExecutor starts them lazily).
        list(pool.map(abs, range(4 * workers)))
        return asyncio.run(sample(pool, 2 * workers, duration_s, warmup_s))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration-ms", type=int, default=3000)
    ap.add_argument("--warmup-ms", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--nice", type=int, default=10)
    a = ap.parse_args()
    d, w, n = a.duration_ms / 1000, a.warmup_ms / 1000, a.workers
    T = concurrent.futures.ThreadPoolExecutor
    P = concurrent.futures.ProcessPoolExecutor
    variants = {
        "idle": (None, 0),
        "threads_cores": (lambda: T(n), n),
        "threads_cores_nice": (lambda: T(n, initializer=nice_thread, initargs=(a.nice,)), n),
        "processes_cores": (lambda: P(n), n),
        "processes_cores_nice": (lambda: P(n, initializer=nice_process, initargs=(a.nice,)), n),
    }
    if n > 1:
        variants["threads_cores_minus_1"] = (lambda: T(n - 1), n - 1)
        variants["processes_cores_minus_1"] = (lambda: P(n - 1), n - 1)
    out = {}
    for key, (make, workers) in variants.items():
        late = run(make, workers, d, w)
        out[f"{key}_p50_us"] = percentile(late, 0.50)
        out[f"{key}_p99_us"] = percentile(late, 0.99)
        out[f"{key}_max_us"] = max(late)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
