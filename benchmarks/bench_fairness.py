#!/usr/bin/env python3
"""bench_fairness.py — the Python asyncio peer of bench_fairness.cpp.

One task runs CPU steps of S ms separated by `await asyncio.sleep(0)`; another
awaits readability of a socketpair (loop.sock_recv) that a writer thread
writes one byte to at random moments. Prints one flat JSON object with the
median and p90 readiness delay (µs) per step size.

    python3 benchmarks/bench_fairness.py --steps 1,5,20 --samples 30
"""

import argparse
import asyncio
import json
import math
import random
import socket
import statistics
import threading
import time


def percentile(values, q):
    v = sorted(values)
    rank = max(1, math.ceil(q * len(v)))
    return v[min(len(v), rank) - 1]


def measure(step_ms, samples):
    rd, wr = socket.socketpair()
    rd.setblocking(False)
    state = {"written_at": 0, "received": 0, "stop": False}
    delays = []

    def writer():
        rng = random.Random(12345)
        for i in range(samples):
            time.sleep((200 + rng.randint(0, 2 * step_ms * 1000)) / 1e6)
            state["written_at"] = time.perf_counter_ns()
            wr.send(b"x")
            while state["received"] <= i:
                time.sleep(50e-6)

    async def cpu_steps():
        while not state["stop"]:
            end = time.perf_counter() + step_ms / 1000
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    async def reader():
        loop = asyncio.get_running_loop()
        cpu = asyncio.create_task(cpu_steps())
        for i in range(samples):
            await loop.sock_recv(rd, 1)
            delays.append((time.perf_counter_ns() - state["written_at"]) / 1e3)
            state["received"] = i + 1
        state["stop"] = True
        await cpu

    t = threading.Thread(target=writer)
    t.start()
    asyncio.run(reader())
    t.join()
    rd.close()
    wr.close()
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
