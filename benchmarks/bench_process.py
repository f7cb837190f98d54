#!/usr/bin/env python3
"""bench_process.py — the Python asyncio peer of bench_process.cpp.

For each start method (fork, spawn, forkserver), a ProcessPoolExecutor(2)
driven from one asyncio event loop with loop.run_in_executor: the same shapes
of work as the C++ program. Prints one flat JSON object {"key": number, ...}
on stdout (median of the repeats); bench_process.cpp runs this script as a
subprocess and parses it.

    python3 benchmarks/bench_process.py --n-seq 2000 --gather 10000 --repeats 3
"""

import argparse
import asyncio
import gc
import json
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import resource_tracker, shared_memory

# --- what the workers run (top-level, so they pickle by name) -----------------


def noop():
    pass


def echo(b):
    return b


def twice(x):
    return 2 * x + 1


def _untracked_register(name, rtype):
    pass


def touch_shm(name):
    """Attaches the segment by name, writes its first byte, returns the name."""
    # Python < 3.13 registers an attached segment with a resource tracker as if
    # this process owned it (gh-82300): a worker with its own tracker would
    # "clean up" the parent's segment, and one sharing the parent's would lose
    # the parent's entry. The parent owns it: attach untracked (this patch runs
    # in the worker process only).
    resource_tracker.register = _untracked_register
    s = shared_memory.SharedMemory(name=name)
    s.buf[0] = (s.buf[0] + 1) & 0xFF
    s.close()
    return name


def map_chunked(ex, items, chunk):
    return list(ex.map(twice, items, chunksize=chunk))


# --- helpers -------------------------------------------------------------------


def percentile(samples, q):
    """Nearest-rank percentile, as bench_common.hpp computes it."""
    s = sorted(samples)
    rank = math.ceil(q * len(s))
    return s[min(len(s) - 1, max(rank, 1) - 1)]


def median_of(repeats, fn):
    samples = []
    for _ in range(repeats):
        gc.collect()
        samples.append(fn())
    return statistics.median(samples)


def now_ns():
    return time.perf_counter_ns()


# --- the measurements, for one executor ---------------------------------------


async def seq_latency(loop, ex, warmup, n):
    """(median, p99) in µs of n sequential `await loop.run_in_executor(ex, noop)`."""
    for _ in range(warmup):
        await loop.run_in_executor(ex, noop)
    ns = []
    for _ in range(n):
        t0 = now_ns()
        await loop.run_in_executor(ex, noop)
        ns.append(now_ns() - t0)
    return percentile(ns, 0.50) / 1e3, percentile(ns, 0.99) / 1e3


async def gather_rate(loop, ex, n):
    """calls/s of asyncio.gather over n loop.run_in_executor(ex, noop)."""
    await loop.run_in_executor(ex, noop)
    t0 = now_ns()
    done = await asyncio.gather(*[loop.run_in_executor(ex, noop) for _ in range(n)])
    t1 = now_ns()
    assert len(done) == n
    return n / ((t1 - t0) / 1e9)


async def start_ms(loop, ctx):
    """ms from creating the executor to the result of its first call."""
    t0 = now_ns()
    ex = ProcessPoolExecutor(2, mp_context=ctx)
    await loop.run_in_executor(ex, noop)
    t1 = now_ns()
    ex.shutdown(wait=True)
    return (t1 - t0) / 1e6


async def payload_us(loop, ex, size, n):
    """Median µs to send `size` bytes to a worker and get them back."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    back = await loop.run_in_executor(ex, echo, data)  # warm-up
    assert len(back) == size
    ns = []
    for _ in range(n):
        t0 = now_ns()
        back = await loop.run_in_executor(ex, echo, data)
        ns.append(now_ns() - t0)
        assert len(back) == size
    return statistics.median(ns) / 1e3


async def shm_us(loop, ex, size, n):
    """Median µs to hand a `size`-byte SharedMemory to a worker by name (it
    attaches, writes one byte, detaches) and get the name back."""
    seg = shared_memory.SharedMemory(create=True, size=size)
    try:
        await loop.run_in_executor(ex, touch_shm, seg.name)  # warm-up
        ns = []
        for _ in range(n):
            before = seg.buf[0]
            t0 = now_ns()
            name = await loop.run_in_executor(ex, touch_shm, seg.name)
            ns.append(now_ns() - t0)
            assert name == seg.name and seg.buf[0] == (before + 1) & 0xFF
        return statistics.median(ns) / 1e3
    finally:
        seg.close()
        seg.unlink()


async def map_rate(loop, ex, items, chunk):
    """items/s of pool.map(twice, items, chunksize=chunk), run off the loop."""
    t0 = now_ns()
    out = await loop.run_in_executor(None, map_chunked, ex, items, chunk)
    t1 = now_ns()
    assert len(out) == len(items) and out[-1] == 2 * items[-1] + 1
    return len(items) / ((t1 - t0) / 1e9)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="*", default=["fork", "spawn", "forkserver"])
    ap.add_argument("--n-seq", type=int, default=2000, help="sequential round trips, each timed")
    ap.add_argument("--warmup", type=int, default=100, help="calls before timing the round trips")
    ap.add_argument("--gather", type=int, default=10_000, help="gathered calls")
    ap.add_argument("--payloads", type=int, nargs="*", default=[1024, 1 << 20, 64 << 20], help="payload sizes")
    ap.add_argument("--payload-n", type=int, nargs="*", default=[500, 50, 5], help="round trips per payload size")
    ap.add_argument("--shm", type=int, default=64 << 20, help="shared memory size (0: skip)")
    ap.add_argument("--shm-n", type=int, default=50)
    ap.add_argument("--map-items", type=int, default=1_000_000)
    ap.add_argument("--chunks", type=int, nargs="*", default=[1000, 10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3, help="repeats per measurement (median reported)")
    args = ap.parse_args()
    r = max(1, args.repeats)

    out = {"repeats": r, "n_seq": args.n_seq}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    items = list(range(args.map_items))
    try:
        for m in args.methods:
            ctx = multiprocessing.get_context(m)
            # Python starts one forkserver per interpreter and keeps it: the
            # first start pays for it, later ones do not. Report both.
            if m == "forkserver":
                out[f"{m}_start_cold_ms"] = loop.run_until_complete(start_ms(loop, ctx))
            out[f"{m}_start_ms"] = median_of(r, lambda: loop.run_until_complete(start_ms(loop, ctx)))

            ex = ProcessPoolExecutor(2, mp_context=ctx)
            try:
                meds, p99s = [], []
                for _ in range(r):
                    gc.collect()
                    med, p99 = loop.run_until_complete(seq_latency(loop, ex, args.warmup, args.n_seq))
                    meds.append(med)
                    p99s.append(p99)
                out[f"{m}_seq_median_us"] = statistics.median(meds)
                out[f"{m}_seq_p99_us"] = statistics.median(p99s)
                out[f"{m}_gather_{args.gather}_per_s"] = median_of(
                    r, lambda: loop.run_until_complete(gather_rate(loop, ex, args.gather))
                )
                for size, n in zip(args.payloads, args.payload_n):
                    out[f"{m}_payload_{size}_us"] = loop.run_until_complete(payload_us(loop, ex, size, max(1, n)))
                if args.shm > 0:
                    out[f"{m}_shm_{args.shm}_us"] = loop.run_until_complete(shm_us(loop, ex, args.shm, args.shm_n))
                for c in args.chunks:
                    out[f"{m}_map_{args.map_items}_c{c}_per_s"] = median_of(
                        r, lambda: loop.run_until_complete(map_rate(loop, ex, items, c))
                    )
            finally:
                ex.shutdown(wait=True)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
