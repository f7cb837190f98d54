#!/usr/bin/env python3
"""bench_mpi.py — the mpi4py peer of bench_mpi.cpp: MPIPoolExecutor on the
same ranks (run by bench_mpi under `mpirun -np N python3 -m mpi4py.futures`,
so rank 0 runs this script and ranks 1..N-1 are the pool's workers). The same
work: pool start to first result, no-op round trip (median, p99), N no-op
calls gathered, map over M ints with chunking, 1 MiB by value. Prints one
flat JSON object on stdout.

    mpirun -np 3 python3 -m mpi4py.futures benchmarks/bench_mpi.py --n-seq 2000
"""

import argparse
import json
import math
import statistics
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def noop():
    pass


def echo(b):
    return b


def twice(x):
    return 2 * x + 1


def percentile(samples, q):
    """Nearest-rank percentile, as bench_common.hpp computes it."""
    s = sorted(samples)
    rank = math.ceil(q * len(s))
    return s[min(len(s) - 1, max(rank, 1) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-seq", type=int, default=2000)
    ap.add_argument("--gather", type=int, default=10000)
    ap.add_argument("--map-items", type=int, default=1000000)
    ap.add_argument("--chunk", type=int, default=10000)
    ap.add_argument("--payload", type=int, default=1 << 20)
    ap.add_argument("--payload-n", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    out = {}
    t0 = time.perf_counter_ns()
    with MPIPoolExecutor() as ex:
        ex.submit(noop).result()
        out["start_us"] = (time.perf_counter_ns() - t0) / 1e3

        for _ in range(min(200, a.n_seq)):
            ex.submit(noop).result()
        samples = []
        for _ in range(a.n_seq):
            t = time.perf_counter_ns()
            ex.submit(noop).result()
            samples.append(time.perf_counter_ns() - t)
        out["rt_median_ns"] = statistics.median(samples)
        out["rt_p99_ns"] = percentile(samples, 0.99)

        rates = []
        for _ in range(a.repeats):
            t = time.perf_counter_ns()
            fs = [ex.submit(noop) for _ in range(a.gather)]
            for f in fs:
                f.result()
            rates.append(a.gather / ((time.perf_counter_ns() - t) / 1e9))
        out["gather_rate"] = statistics.median(rates)

        items = list(range(a.map_items))
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter_ns()
            r = list(ex.map(twice, items, chunksize=a.chunk))
            times.append(time.perf_counter_ns() - t)
            assert r[-1] == 2 * items[-1] + 1
        out["map_ns"] = statistics.median(times)

        payload = bytes(a.payload)
        samples = []
        for _ in range(a.payload_n):
            t = time.perf_counter_ns()
            b = ex.submit(echo, payload).result()
            samples.append(time.perf_counter_ns() - t)
            assert len(b) == a.payload
        out["payload_ns"] = statistics.median(samples)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
