#!/usr/bin/env python3
"""bench_loop.py — the Python asyncio peer of bench_loop.cpp.

Runs the same shapes of work as the C++ program on one asyncio event loop and
prints one flat JSON object {"key": number, ...} on stdout (median of the
repeats). bench_loop.cpp runs this script as a subprocess and parses that line.

    python3 benchmarks/bench_loop.py --n 200000 --repeats 5
"""

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time


def median_of(repeats, fn):
    samples = []
    for _ in range(repeats):
        gc.collect()
        samples.append(fn())
    return statistics.median(samples)


async def leaf():
    return 1


def bench_task_await(loop, n):
    """ns per `await leaf()` (a coroutine await, no Task)."""

    async def outer():
        s = 0
        t0 = time.perf_counter_ns()
        for _ in range(n):
            s += await leaf()
        t1 = time.perf_counter_ns()
        assert s == n
        return (t1 - t0) / n

    return loop.run_until_complete(outer())


def bench_create_task_await(loop, n):
    """ns per `await asyncio.create_task(leaf())` (a scheduled Task, awaited)."""

    async def outer():
        s = 0
        t0 = time.perf_counter_ns()
        for _ in range(n):
            s += await asyncio.create_task(leaf())
        t1 = time.perf_counter_ns()
        assert s == n
        return (t1 - t0) / n

    return loop.run_until_complete(outer())


def bench_call_soon_fanout(loop, n):
    """callbacks/s: post n callbacks, then run them."""
    count = [0]

    def cb():
        count[0] += 1

    t0 = time.perf_counter_ns()
    for _ in range(n):
        loop.call_soon(cb)
    loop.call_soon(loop.stop)
    loop.run_forever()
    t1 = time.perf_counter_ns()
    assert count[0] == n
    return n / ((t1 - t0) / 1e9)


def bench_call_soon_chain(loop, n):
    """callbacks/s: each callback posts the next."""
    count = [0]

    def cb():
        count[0] += 1
        if count[0] < n:
            loop.call_soon(cb)
        else:
            loop.stop()

    t0 = time.perf_counter_ns()
    loop.call_soon(cb)
    loop.run_forever()
    t1 = time.perf_counter_ns()
    assert count[0] == n
    return n / ((t1 - t0) / 1e9)


def noop():
    pass


def bench_timer_bulk(loop, n):
    """ns per call_later+cancel pair: schedule all n, then cancel all n."""
    t0 = time.perf_counter_ns()
    handles = [loop.call_later(1.0, noop) for _ in range(n)]
    for h in handles:
        h.cancel()
    del handles
    t1 = time.perf_counter_ns()
    # Let the loop drop the cancelled entries before the next repeat.
    loop.run_until_complete(asyncio.sleep(0))
    return (t1 - t0) / n


def bench_timer_interleaved(loop, n):
    """ns per call_later+cancel pair: cancel each right after scheduling it."""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        loop.call_later(1.0, noop).cancel()
    t1 = time.perf_counter_ns()
    loop.run_until_complete(asyncio.sleep(0))
    return (t1 - t0) / n


def bench_sleep0_pingpong(loop, n):
    """ns per yield: two tasks each doing n `await asyncio.sleep(0)`."""

    async def yielder():
        for _ in range(n):
            await asyncio.sleep(0)

    async def main():
        t0 = time.perf_counter_ns()
        await asyncio.gather(yielder(), yielder())
        t1 = time.perf_counter_ns()
        return (t1 - t0) / (2 * n)

    return loop.run_until_complete(main())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="operations per measurement")
    ap.add_argument("--repeats", type=int, default=5, help="repeats per measurement (median reported)")
    args = ap.parse_args()
    n, r = max(1, args.n), max(1, args.repeats)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        out = {
            "n": n,
            "repeats": r,
            "task_await_ns": median_of(r, lambda: bench_task_await(loop, n)),
            "create_task_await_ns": median_of(r, lambda: bench_create_task_await(loop, max(1, n // 4))),
            "call_soon_fanout_per_s": median_of(r, lambda: bench_call_soon_fanout(loop, n)),
            "call_soon_chain_per_s": median_of(r, lambda: bench_call_soon_chain(loop, n)),
            "timer_bulk_ns": median_of(r, lambda: bench_timer_bulk(loop, n)),
            "timer_interleaved_ns": median_of(r, lambda: bench_timer_interleaved(loop, n)),
            "sleep0_pingpong_ns": median_of(r, lambda: bench_sleep0_pingpong(loop, max(1, n // 4))),
        }
    finally:
        loop.close()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
