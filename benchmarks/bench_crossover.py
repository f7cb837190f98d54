#!/usr/bin/env python3
"""bench_crossover.py — the Python asyncio peer of bench_crossover.cpp.

When does offloading a call beat running it inline on the event loop? For a
grid of compute per call (a calibrated pure-Python spin, which holds the GIL)
and payload size (bytes passed by value, pickled on the way to a process; or a
multiprocessing.shared_memory segment that a worker process attaches by name),
times a batch of calls run inline (sequentially, on the loop), on a
ThreadPoolExecutor and on a ProcessPoolExecutor (both gathered with
asyncio.gather over loop.run_in_executor). Prints one flat JSON object
{"key": number, ...} on stdout; bench_crossover.cpp runs this script as a
subprocess, parses it and computes the speed-ups and crossovers.

Keys: "<kind>_<bytes>_<work_ns>_<executor>_ns" (ns per call) and
"..._calls" (the batch size), kind "value" or "shared", executor "inline",
"thread" or "process"; "ns_per_iter" (the spin's calibration), "workers".

    python3 benchmarks/bench_crossover.py --work-ns 1000 100000 --bytes 0 65536 --shared-bytes 65536
"""

import argparse
import asyncio
import gc
import json
import math
import os
import statistics
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import resource_tracker, shared_memory

# --- the work (top-level, so the process pool pickles it by name) --------------


def spin(iters, x):
    """`iters` rounds of integer math on one value: the calibrated compute."""
    for _ in range(iters):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def work(data, iters):
    """Reads every byte of the payload once (crc32, in C), then spins."""
    return spin(iters, zlib.crc32(data))


def work_shared(name, size, iters):
    """The process-pool side of a shared payload: attach the segment by name
    (a fresh mapping per call, as a worker that is handed a name does), work
    on its bytes in place, detach."""
    seg = shared_memory.SharedMemory(name=name)
    try:
        return work(seg.buf[:size], iters)
    finally:
        seg.close()


def noop():
    return 0


def _untracked_register(name, rtype):
    pass


def untrack_attachments():
    """Process-pool initializer. Python < 3.13 registers an attached segment
    with a resource tracker as if the attaching process owned it (gh-82300), so
    a worker could unlink the parent's segment when it exits: the parent owns
    the segments, and workers attach untracked. (Runs in the workers only.)"""
    resource_tracker.register = _untracked_register


# --- measuring -------------------------------------------------------------------


def now_ns():
    return time.perf_counter_ns()


def calibrate(min_ns):
    """CPU ns per spin iteration (thread CPU time: unlike wall time, not
    stretched while other processes have the core): the fastest of a few runs
    of at least `min_ns`."""
    iters = 1000
    while True:
        t0 = time.thread_time_ns()
        spin(iters, 1)
        if time.thread_time_ns() - t0 >= min_ns:
            break
        iters *= 2
    samples = []
    for _ in range(5):
        t0 = time.thread_time_ns()
        spin(iters, 1)
        samples.append((time.thread_time_ns() - t0) / iters)
    return min(samples)


async def batch_ns(loop, executor, fn, args, m, expect):
    """Wall ns of m calls of fn(*args): inline (executor None: one after the
    other, on the loop) or gathered over loop.run_in_executor."""
    gc.collect()
    t0 = now_ns()
    if executor is None:
        results = [fn(*args) for _ in range(m)]
    else:
        results = await asyncio.gather(*[loop.run_in_executor(executor, fn, *args) for _ in range(m)])
    t1 = now_ns()
    assert len(results) == m and all(r == expect for r in results), "a call returned a wrong checksum"
    return t1 - t0


def choose_calls(per_call_ns, min_calls, size, args):
    """Calls in a batch: enough for about --target-ms, at least `min_calls`, at
    most --max-calls, and (memory) at most --max-batch-bytes of payload."""
    m = math.ceil(args.target_ms * 1e6 / max(per_call_ns, 1.0))
    m = min(m, args.max_calls)
    if size > 0:
        m = min(m, max(1, args.max_batch_bytes // size))
    return max(min_calls, m)


async def measure(loop, executor, fn, fargs, min_calls, size, expect, args):
    """(ns per call, calls): a pilot batch of min_calls (warm-up and sizing),
    then the median of --repeats batches of the chosen size (one batch where
    the pilot says it would take over 5 x --target-ms)."""
    pilot = await batch_ns(loop, executor, fn, fargs, min_calls, expect)
    if args.smoke:
        return pilot / min_calls, min_calls
    m = choose_calls(pilot / min_calls, min_calls, size, args)
    repeats = 1 if pilot / min_calls * m > 5 * args.target_ms * 1e6 else args.repeats
    samples = [await batch_ns(loop, executor, fn, fargs, m, expect) / m for _ in range(repeats)]
    return statistics.median(samples), m


def payload_bytes(size):
    """Deterministic, not all zero."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


async def run_grid(loop, args, out):
    workers = args.workers
    ns_per_iter = out["ns_per_iter"]
    # The process pool first, warm, before the thread pool's threads exist
    # (fork, Python's default start method on Linux, copies this process).
    proc = ProcessPoolExecutor(max_workers=workers, initializer=untrack_attachments)
    await asyncio.gather(*[loop.run_in_executor(proc, noop) for _ in range(2 * workers)])
    thread = ThreadPoolExecutor(max_workers=workers)
    try:
        cells = [("value", b) for b in args.bytes] + [("shared", b) for b in args.shared_bytes]
        for kind, size in cells:
            data = payload_bytes(size)
            seg = view = None
            if kind == "shared":
                seg = shared_memory.SharedMemory(create=True, size=size)
                view = seg.buf[:size]
                view[:] = data
            try:
                # 64 MiB cells are slow enough per call: one call per worker.
                min_calls = workers if size >= (64 << 20) else 2 * workers
                for w in args.work_ns:
                    iters = max(1, round(w / ns_per_iter))
                    expect = work(data, iters)
                    if kind == "value":
                        local_args = process_args = (data, iters)
                        process_fn = work
                    else:
                        # In-process executors read the owner's mapping; a
                        # worker process gets the segment's name.
                        local_args = (view, iters)
                        process_fn, process_args = work_shared, (seg.name, size, iters)
                    for executor, ex, fn, fargs in (
                        ("inline", None, work, local_args),
                        ("thread", thread, work, local_args),
                        ("process", proc, process_fn, process_args),
                    ):
                        ns, m = await measure(loop, ex, fn, fargs, min_calls, size, expect, args)
                        key = f"{kind}_{size}_{w}_{executor}"
                        out[key + "_ns"] = ns
                        out[key + "_calls"] = m
            finally:
                if seg is not None:
                    view.release()  # close() refuses while a view of the mapping exists
                    seg.close()
                    seg.unlink()
    finally:
        thread.shutdown(wait=True)
        proc.shutdown(wait=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-ns", type=int, nargs="*", default=[1000, 10_000, 100_000, 1_000_000, 10_000_000])
    ap.add_argument("--bytes", type=int, nargs="*", default=[0, 1024, 64 << 10, 1 << 20, 16 << 20, 64 << 20])
    ap.add_argument("--shared-bytes", type=int, nargs="*", default=[64 << 10, 1 << 20, 16 << 20, 64 << 20])
    # bench_crossover.cpp passes its own worker count (available_cpus()), so
    # that both sides run the same number; alone, the script uses os.cpu_count().
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--target-ms", type=float, default=40.0, help="wall time of a measured batch")
    ap.add_argument("--max-calls", type=int, default=20_000)
    ap.add_argument("--max-batch-bytes", type=int, default=256 << 20)
    ap.add_argument("--repeats", type=int, default=3, help="measured batches per figure (median)")
    ap.add_argument("--smoke", action="store_true", help="one small batch per figure, no pilot")
    args = ap.parse_args()
    args.workers = max(1, args.workers)
    args.repeats = max(1, args.repeats)

    t0 = now_ns()
    out = {"workers": args.workers, "ns_per_iter": calibrate(1e6 if args.smoke else 5e6)}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run_grid(loop, args, out))
    finally:
        loop.close()
    out["seconds"] = (now_ns() - t0) / 1e9
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
