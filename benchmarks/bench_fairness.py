#!/usr/bin/env python3
"""bench_fairness.py — the Python asyncio peer of bench_fairness.cpp.

One task runs CPU steps of S ms separated by `await asyncio.sleep(0)`; another
awaits readability of a socketpair (loop.sock_recv) that a writer process
writes the time of the write to at random moments. Prints one flat JSON object with the
median and p90 readiness delay (µs) per step size.

    python3 benchmarks/bench_fairness.py --steps 1,5,20 --samples 30
"""

import argparse
import asyncio
import json
import math
import os
import random
import socket
import statistics
import struct
import time


def percentile(values, q):
    v = sorted(values)
    rank = max(1, math.ceil(q * len(v)))
    return v[min(len(v), rank) - 1]


def measure(step_ms, samples):
    # The writer is a child process, not a thread: a Python thread would need
    # the GIL, which the CPU steps hold, to write at all. It sends the time of
    # the write (perf_counter_ns is CLOCK_MONOTONIC, shared across processes)
    # and waits for the reader's ack before the next write.
    rd, wr = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        rd.close()
        rng = random.Random(12345)
        for _ in range(samples):
            time.sleep((200 + rng.randint(0, 2 * step_ms * 1000)) / 1e6)
            wr.sendall(struct.pack("q", time.perf_counter_ns()))
            if not wr.recv(1):
                break
        os._exit(0)
    wr.close()
    rd.setblocking(False)
    stop = False
    delays = []

    async def cpu_steps():
        while not stop:
            end = time.perf_counter() + step_ms / 1000
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    async def reader():
        nonlocal stop
        loop = asyncio.get_running_loop()
        cpu = asyncio.create_task(cpu_steps())
        for _ in range(samples):
            data = b""
            while len(data) < 8:
                data += await loop.sock_recv(rd, 8 - len(data))
            delays.append((time.perf_counter_ns() - struct.unpack("q", data)[0]) / 1e3)
            await loop.sock_sendall(rd, b"a")
        stop = True
        await cpu

    asyncio.run(reader())
    rd.close()
    os.waitpid(pid, 0)
    return delays


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="1,5,20")
    ap.add_argument("--samples", type=int, default=30)
    a = ap.parse_args()
    out = {}
    for s in (int(x) for x in a.steps.split(",")):
        d = measure(s, a.samples)
        out[f"step_{s}ms_median_us"] = statistics.median(d)
        out[f"step_{s}ms_p90_us"] = percentile(d, 0.9)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
