#!/usr/bin/env python3
"""bench_lag.py — the Python asyncio peer of bench_lag.cpp.

Measures the loop's lag (lateness of `await asyncio.sleep(0.001)`) while the
loop is idle, then while a ThreadPoolExecutor or ProcessPoolExecutor runs
1 ms CPU spins nonstop (two calls in flight per worker, fed from the loop),
with as many workers as cores, at nice N, and with one worker fewer; every
variant once per round, rounds interleaved. Prints one flat JSON object:
<variant>_{p50,p99,max}_us.

    python3 benchmarks/bench_lag.py --rounds 5 --round-ms 600 --warmup-ms 100 --workers 2 --nice 10
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


async def sample(pool, inflight, round_s, warmup_s, late):
    loop = asyncio.get_running_loop()
    stop = False

    async def feeder():
        while not stop:
            await loop.run_in_executor(pool, spin_1ms)

    feeders = [asyncio.create_task(feeder()) for _ in range(inflight)] if pool else []
    await asyncio.sleep(warmup_s)
    end = time.perf_counter() + round_s
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        late.append(max(0.0, time.perf_counter() - t0 - 0.001) * 1e6)
    stop = True
    await asyncio.gather(*feeders)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-ms", type=int, default=600)
    ap.add_argument("--warmup-ms", type=int, default=100)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--nice", type=int, default=10)
    a = ap.parse_args()
    r, w, n = a.round_ms / 1000, a.warmup_ms / 1000, a.workers
    T = concurrent.futures.ThreadPoolExecutor
    P = concurrent.futures.ProcessPoolExecutor
    # key: (pool or None, workers). The loop-spin and loop-slice variants of
    # bench_lag.cpp have no asyncio counterpart.
    variants = {
        "idle": (None, 0),
        "threads_cores": (T(n), n),
        "threads_cores_nice": (T(n, initializer=nice_thread, initargs=(a.nice,)), n),
        "processes_cores": (P(n), n),
        "processes_cores_nice": (P(n, initializer=nice_process, initargs=(a.nice,)), n),
    }
    if n > 1:
        variants["threads_cores_minus_1"] = (T(n - 1), n - 1)
        variants["processes_cores_minus_1"] = (P(n - 1), n - 1)
    for pool, workers in variants.values():
        if pool:  # start every worker before sampling (they start lazily)
            list(pool.map(abs, range(4 * workers)))
    lates = {key: [] for key in variants}
    for _ in range(a.rounds):  # interleaved, as in bench_lag.cpp
        for key, (pool, workers) in variants.items():
            asyncio.run(sample(pool, 2 * workers, r, w, lates[key]))
    out = {}
    for key, late in lates.items():
        out[f"{key}_p50_us"] = percentile(late, 0.50)
        out[f"{key}_p99_us"] = percentile(late, 0.99)
        out[f"{key}_max_us"] = max(late)
    for pool, _ in variants.values():
        if pool:
            pool.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
