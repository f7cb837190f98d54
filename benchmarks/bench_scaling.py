#!/usr/bin/env python3
"""bench_scaling.py — the Python asyncio peer of bench_scaling.cpp.

(1) Round trip of one `await asyncio.to_thread(noop)` while K other offloads
are pending: K `loop.run_in_executor` calls on a one-thread ThreadPoolExecutor
whose thread is held by a threading.Event (the first call), awaited by one
asyncio.gather ("gather") or by K tasks ("tasks"); the repeat with the lowest
median counts, as in the C++ program. (2) tracemalloc's growth
per pending run_in_executor future, gathered and each in its own task, over N
of them. (3) tracemalloc's growth per task suspended on an asyncio.Event.
Prints one flat JSON object {"key": number, ...} on stdout.

    python3 benchmarks/bench_scaling.py --in-flight 1 100 10000 100000 --samples 2000 --memory-n 100000
"""

import argparse
import asyncio
import gc
import json
import math
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor


def noop():
    pass


def percentile(samples, q):
    """Nearest-rank percentile, as bench_common.hpp computes it."""
    s = sorted(samples)
    rank = math.ceil(q * len(s))
    return s[min(len(s) - 1, max(rank, 1) - 1)]


async def start_pending(loop, blocked, latch, k, as_tasks):
    """k pending offloads on `blocked` (the first holds its thread on `latch`)."""
    keep = [asyncio.ensure_future(loop.run_in_executor(blocked, latch.wait))]
    if as_tasks:

        async def one():
            await loop.run_in_executor(blocked, noop)

        keep += [asyncio.create_task(one()) for _ in range(k - 1)]
    else:
        keep.append(asyncio.gather(*[loop.run_in_executor(blocked, noop) for _ in range(k - 1)]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return keep


async def round_trips_while(k, as_tasks, samples, warmup):
    loop = asyncio.get_running_loop()
    blocked = ThreadPoolExecutor(1)
    latch = threading.Event()
    keep = await start_pending(loop, blocked, latch, k, as_tasks)
    for _ in range(warmup):
        await asyncio.to_thread(noop)
    ns = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        await asyncio.to_thread(noop)
        ns.append(time.perf_counter_ns() - t0)
    latch.set()
    await asyncio.gather(*keep)
    blocked.shutdown(wait=True)
    return percentile(ns, 0.50) / 1e3, percentile(ns, 0.99) / 1e3


async def pending_bytes(n, as_tasks):
    loop = asyncio.get_running_loop()
    blocked = ThreadPoolExecutor(1)
    latch = threading.Event()
    await loop.run_in_executor(blocked, noop)  # the executor's thread exists
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = await start_pending(loop, blocked, latch, n, as_tasks)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    latch.set()
    await asyncio.gather(*keep)
    blocked.shutdown(wait=True)
    return (after - before) / n


async def suspended_task_bytes(n):
    ev = asyncio.Event()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.create_task(ev.wait()) for _ in range(n)]
    await asyncio.sleep(0)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    ev.set()
    await asyncio.gather(*tasks)
    return (after - before) / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--in-flight", type=int, nargs="*", default=[1, 100, 10_000, 100_000])
    ap.add_argument("--samples", type=int, default=2000, help="timed round trips per K")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--memory-n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3, help="latency: the repeat with the lowest median counts")
    args = ap.parse_args()

    out = {}
    for as_tasks in (False, True):
        how = "tasks" if as_tasks else "gather"
        for k in args.in_flight:
            runs = [asyncio.run(round_trips_while(max(1, k), as_tasks, args.samples, args.warmup))
                    for _ in range(max(1, args.repeats))]
            med, p99 = min(runs)
            out[f"rtt_{how}_{k}_median_us"] = med
            out[f"rtt_{how}_{k}_p99_us"] = p99
    n = max(1, args.memory_n)
    out["bytes_per_pending_offload_gather"] = asyncio.run(pending_bytes(n, False))
    out["bytes_per_pending_offload_task"] = asyncio.run(pending_bytes(n, True))
    out["bytes_per_suspended_task"] = asyncio.run(suspended_task_bytes(n))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
