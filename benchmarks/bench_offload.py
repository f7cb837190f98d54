#!/usr/bin/env python3
"""bench_offload.py — the Python asyncio peer of bench_offload.cpp.

Offloads a no-op to threads from one asyncio event loop, the same shapes of
work as the C++ program, and prints one flat JSON object {"key": number, ...}
on stdout (median of the repeats). bench_offload.cpp runs this script as a
subprocess and parses that line.

    python3 benchmarks/bench_offload.py --n-seq 20000 --gather 10000 100000 --repeats 3
"""

import argparse
import asyncio
import gc
import json
import math
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def noop():
    pass


def percentile(samples, q):
    """Nearest-rank percentile, as bench_common.hpp computes it."""
    s = sorted(samples)
    rank = math.ceil(q * len(s))
    return s[min(len(s) - 1, max(rank, 1) - 1)]


def latency_of(loop, warmup, n, offload):
    """(median, p99) in µs of n sequential `await offload()` round trips."""

    async def run():
        for _ in range(warmup):
            await offload()
        ns = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            await offload()
            ns.append(time.perf_counter_ns() - t0)
        return percentile(ns, 0.50) / 1e3, percentile(ns, 0.99) / 1e3

    return loop.run_until_complete(run())


def gather_rate(loop, ex, warmup, n):
    """calls/s: asyncio.gather of n `loop.run_in_executor(ex, noop)`."""

    async def run():
        for _ in range(warmup):
            await loop.run_in_executor(ex, noop)
        t0 = time.perf_counter_ns()
        done = await asyncio.gather(*[loop.run_in_executor(ex, noop) for _ in range(n)])
        t1 = time.perf_counter_ns()
        assert len(done) == n
        return n / ((t1 - t0) / 1e9)

    return loop.run_until_complete(run())


def median_latency(repeats, fn):
    meds, p99s = [], []
    for _ in range(repeats):
        gc.collect()
        m, p = fn()
        meds.append(m)
        p99s.append(p)
    return statistics.median(meds), statistics.median(p99s)


def median_of(repeats, fn):
    samples = []
    for _ in range(repeats):
        gc.collect()
        samples.append(fn())
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-seq", type=int, default=20_000, help="sequential round trips, each timed")
    ap.add_argument("--warmup", type=int, default=500, help="calls before any timing")
    ap.add_argument("--gather", type=int, nargs="*", default=[10_000, 100_000], help="gathered call counts")
    ap.add_argument("--repeats", type=int, default=3, help="repeats per measurement (median reported)")
    args = ap.parse_args()
    n, w, r = max(1, args.n_seq), max(0, args.warmup), max(1, args.repeats)

    out = {"n_seq": n, "repeats": r}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # Like the C++ side's thread_pool({.workers = 2}); to_thread uses the
    # loop's default executor (min(32, cpus + 4) threads).
    ex = ThreadPoolExecutor(2)
    try:
        med, p99 = median_latency(r, lambda: latency_of(loop, w, n, lambda: asyncio.to_thread(noop)))
        out["to_thread_median_us"], out["to_thread_p99_us"] = med, p99
        med, p99 = median_latency(r, lambda: latency_of(loop, w, n, lambda: loop.run_in_executor(ex, noop)))
        out["run_in_executor_median_us"], out["run_in_executor_p99_us"] = med, p99
        for g in args.gather:
            g = max(1, g)
            out[f"gather_{g}_per_s"] = median_of(r, lambda: gather_rate(loop, ex, w, g))
    finally:
        ex.shutdown(wait=True)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
