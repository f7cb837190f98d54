#!/usr/bin/python3
"""bench_service_driver.py — examples/http_service (C++) beside its asyncio peer under wrk.

Starts each server on an ephemeral port (127.0.0.1 only), calibrates the /cpu
size `n` of each so that one call costs ~20 ms of CPU, then measures with wrk
(Debian package), the C++ service and the Python peer (benchmarks/bench_service.py)
in the same run, alternating which goes first:

  ping alone   one wrk on /ping, unpaced (throughput and latency of the loop);
  ping + cpu   a wrk with --cpu-connections connections hammering /cpu?n=<calibrated>
               and, while it runs, a wrk on /ping: the latency a /ping client sees
               while the pool is saturated, and the /cpu throughput;

for each --modes (inline / thread / process: where /cpu runs) and each pool
setting (--workers x --nice). A fresh server per (mode, setting, implementation,
repeat); reported: p50/p99 latency and req/s of each wrk (medians over repeats,
with the range), the ratio C++/Python, failed requests (wrk non-2xx responses
and socket errors), the server's fd count growth (fds in /proc/PID/fd after the
phase, once its connections have closed, minus before), whether SIGTERM ended it
with exit status 0 and whether worker processes outlived it.

Calibration (before any hogs start): each implementation is started in inline
mode (the call runs on the loop thread: no hand-off cost) and single /cpu
requests are sent on one keep-alive connection; the cost of one is the CPU
time the server's threads used for it (/proc/PID/task/*/schedstat, in ns: other
work on the machine does not change it, unlike wall time) minus that of a /ping
(the HTTP part). n grows 4x until a call costs >= 2 ms, is scaled linearly to
--target-ms, and corrected once from a median of 5 calls at that size. Where
schedstat is missing, wall time is used instead (said in the output). The
answer to /cpu?n=1000 is checked against cpu_work(1000) computed here.

Options: --quick (about 20 s: 1 s per wrk, one repeat, for the CI smoke test;
failures, fd growth, a wrong answer or an unclean exit then make the exit status 1),
--repeats N, --duration S, --hogs N (busy-loop processes at normal priority
beside the whole measurement: a busy machine), --workers LIST, --nice LIST,
--modes LIST, --markdown (tables for RESULTS.md), --json FILE.
Exits 77 (skip) when wrk is not installed.

    /usr/bin/python3 benchmarks/bench_service_driver.py --cpp build/release/examples/http_service --markdown
"""

import argparse
import ctypes
import http.client
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY_PEER = os.path.join(HERE, "bench_service.py")
MASK64 = (1 << 64) - 1
SKIP = 77

# wrk script: an optional pause before each request (PING_DELAY_MS, 0 = none),
# and a done() that prints one JSON line with exact percentiles (microseconds)
# and the error counts, instead of wrk's rounded text.
WRK_LUA = r"""
local pause = tonumber(os.getenv("BENCH_WRK_DELAY_MS") or "0")
if pause > 0 then
  function delay() return pause end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "max_us": %.1f, "mean_us": %.1f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def cpu_work(n):
    x = 88172645463325252
    for _ in range(n):
        x ^= (x << 13) & MASK64
        x ^= x >> 7
        x ^= (x << 17) & MASK64
    return x


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def loadavg():
    """The 1-minute load average (other work on the machine shows here)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def die(message, code=2):
    print(f"bench_service_driver: {message}", file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------------------
# Hogs: busy-loop processes beside the measurement (a busy machine)
# ---------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn of every child (servers, wrk, hogs): SIGKILL when the driver dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _hog_preexec():
    _die_with_parent()
    os.setpriority(os.PRIO_PROCESS, 0, 0)  # normal priority (fails quietly if we were niced)


class Hogs:
    def __init__(self, n):
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", "while True: pass"],
                preexec_fn=_hog_preexec,
                stdin=subprocess.DEVNULL,
            )
            for _ in range(n)
        ]

    def stop(self):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


def child_pids(pid):
    """Pids whose parent is `pid` (from /proc/*/stat)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # field 4 (ppid) follows the ")" that closes the command name
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def descendants(pid):
    found, todo = [], [pid]
    while todo:
        kids = child_pids(todo.pop())
        found += kids
        todo += kids
    return found


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


class Server:
    """One server process; reads `listening on HOST:PORT` from its stdout."""

    def __init__(self, impl, command, start_timeout=60.0):
        self.impl = impl
        self.command = command
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr,
            preexec_fn=_die_with_parent,
        )
        self.port = self._read_port(start_timeout)
        self.workers_seen = []

    def _read_port(self, timeout):
        deadline = time.monotonic() + timeout
        line = b""
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.kill()
                die(f"{self.impl}: no 'listening on HOST:PORT' line within {timeout:.0f} s: {self.command}", 1)
            chunk = os.read(fd, 1)
            if not chunk:
                code = self.proc.wait()
                die(f"{self.impl}: exited with status {code} before listening: {self.command}\n{self.stderr_text()}", 1)
            line += chunk
        m = re.fullmatch(rb"listening on (\S+):(\d+)\n", line)
        if not m:
            self.kill()
            die(f"{self.impl}: unexpected first line {line!r} (the contract: 'listening on HOST:PORT')", 1)
        return int(m.group(2))

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def fd_count(self):
        if self.proc.poll() is not None:
            die(f"{self.impl} exited with status {self.proc.returncode} during the measurement: "
                f"{' '.join(self.command)}\n{self.stderr_text()}", 1)
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def settled_fd_count(self, baseline, timeout=3.0):
        """fd count once it is back to `baseline`, or the last count after `timeout`
        (closed connections may take a moment to be noticed by the server)."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.fd_count()
            if count <= baseline or time.monotonic() >= deadline:
                return count
            time.sleep(0.05)

    def stop(self, grace=15.0):
        """SIGTERM; returns (exit status, worker processes left alive)."""
        workers = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = "killed: no exit within %.0f s of SIGTERM" % grace
        deadline = time.monotonic() + 5.0
        left = [p for p in workers if pid_alive(p)]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [p for p in left if pid_alive(p)]
        for p in left:  # leaked by the server: ours to clean up now
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc.stdout.close()
        return code, len(left)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def server_command(impl, paths, mode, workers, nice, start):
    args = ["--host", "127.0.0.1", "--port", "0", "--mode", mode]
    if mode != "inline":
        args += ["--workers", str(workers), "--nice", str(nice)]
    if start:
        args += ["--start", start]
    if impl == "cpp":
        return [paths["cpp"]] + args
    return [paths["python"], PY_PEER] + args


class Client:
    """One keep-alive HTTP/1.1 connection (for calibration and warm-up)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path):
        t0 = time.perf_counter()
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        return r.status, body, time.perf_counter() - t0

    def close(self):
        self.conn.close()


def process_cpu_ns(pid):
    """CPU time (ns) of every thread of `pid` so far, from /proc/PID/task/*/schedstat
    (nanoseconds, unlike the 10 ms ticks of /proc/PID/stat); None where unavailable."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def calibrate(impl, paths, target_ms, quick, start):
    """n so that one /cpu call costs target_ms of CPU on this implementation.

    The server runs in inline mode (the call runs on its loop thread) and the CPU
    time its threads used per request is read from /proc/PID/task/*/schedstat
    (what another process on the machine does not change, unlike wall time),
    minus the CPU time of a /ping (the HTTP part). Where schedstat is missing,
    the wall time of single requests is used instead, minus a /ping's.
    Returns (n, ms per call, "cpu" or "wall")."""
    server = Server(impl, server_command(impl, paths, "inline", 1, 0, start))
    client = Client(server.port)
    pid = server.proc.pid
    clock = "cpu" if process_cpu_ns(pid) is not None else "wall"

    def timed(path):
        before = process_cpu_ns(pid) if clock == "cpu" else 0
        status, body, wall = client.get(path)
        if status != 200:
            die(f"{impl}: GET {path} answered {status} {body!r} during calibration", 1)
        return (process_cpu_ns(pid) - before) / 1e9 if clock == "cpu" else wall

    try:
        status, body, _ = client.get("/cpu?n=1000")
        if status != 200 or body != b"%d\n" % cpu_work(1000):
            die(f"{impl}: GET /cpu?n=1000 answered {status} {body!r}; expected 200 {cpu_work(1000)}", 1)
        ping = statistics.median(timed("/ping") for _ in range(20 if quick else 100))

        def cost(n, k):
            return max(1e-6, statistics.median(timed(f"/cpu?n={n}") for _ in range(k)) - ping)

        n = 1000
        while True:
            c = cost(n, 3)
            if c >= 0.002 or n >= 10**9:
                break
            n *= 4
        n = max(1, round(n * target_ms / 1000 / c))
        n = max(1, round(n * target_ms / 1000 / cost(n, 3 if quick else 5)))
        measured = cost(n, 3 if quick else 5) * 1000
    finally:
        client.close()
        server.stop()
    return n, measured, clock


# ---------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------


class Wrk:
    def __init__(self, wrk, script, port, path, connections, seconds, delay_ms=0):
        env = dict(os.environ, BENCH_WRK_DELAY_MS=str(delay_ms))
        self.command = [
            wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
            "-s", script, f"http://127.0.0.1:{port}{path}",
        ]
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent
        )

    def result(self):
        out, _ = self.proc.communicate()
        text = out.decode(errors="replace")
        m = re.search(r"^BENCH_JSON (\{.*\})$", text, re.M)
        if self.proc.returncode != 0 or not m:
            die(f"wrk failed (status {self.proc.returncode}): {' '.join(self.command)}\n{text}", 1)
        r = json.loads(m.group(1))
        seconds = r["duration_us"] / 1e6
        return {
            "p50_ms": r["p50_us"] / 1000,
            "p90_ms": r["p90_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000,
            "max_ms": r["max_us"] / 1000,
            "rps": r["requests"] / seconds if seconds > 0 else 0.0,
            "requests": r["requests"],
            "non2xx": r["status"],
            "socket_errors": r["connect"] + r["read"] + r["write"] + r["timeout"],
        }


def measure_server(impl, cmd, cfg, n):
    """One server: ping alone, then ping beside /cpu load. Returns a dict of results."""
    server = Server(impl, cmd)
    try:
        client = Client(server.port)
        for _ in range(10):
            client.get("/ping")
        for _ in range(max(2, cfg.workers_now)):  # every worker started and warm
            status, body, _ = client.get(f"/cpu?n={n}")
            if status != 200 or not re.fullmatch(rb"\d+\n", body):
                die(f"{impl}: GET /cpu?n={n} answered {status} {body!r}", 1)
        with_client = server.fd_count()
        client.close()
        # the baseline: the warm-up connection closed on the server's side too
        fd_before = server.settled_fd_count(with_client - 1, timeout=2.0)
        alone = Wrk(cfg.wrk, cfg.script, server.port, "/ping", cfg.ping_connections, cfg.duration).result()
        fd_after_alone = server.settled_fd_count(fd_before)
        # /cpu runs from `lead` s before the /ping measurement to about 1 s after it
        lead = 0.5 if cfg.quick else 1.0
        cpu = Wrk(cfg.wrk, cfg.script, server.port, f"/cpu?n={n}", cfg.cpu_connections, cfg.duration + (1 if cfg.quick else 2))
        time.sleep(lead)  # the pool is saturated before /ping is measured
        ping = Wrk(
            cfg.wrk, cfg.script, server.port, "/ping", cfg.probe_connections, cfg.duration, cfg.probe_delay_ms
        ).result()
        cpu_result = cpu.result()
        fd_after = server.settled_fd_count(fd_before)
    finally:
        code, leaked = server.stop()
    return {
        "loadavg": loadavg(),
        "alone": alone,
        "loaded_ping": ping,
        "loaded_cpu": cpu_result,
        "fd_before": fd_before,
        "fd_growth": max(fd_after_alone, fd_after) - fd_before,
        "exit": code,
        "leaked_processes": leaked,
        "stderr": server.stderr_text() if code != 0 else "",
    }


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

IMPL_NAMES = {"cpp": "C++", "py": "Python"}


def med(values):
    return statistics.median(values) if values else float("nan")


def fmt_ms(values):
    if not values:
        return "—"
    m = med(values)
    if len(values) > 1 and max(values) - min(values) > 0.005 * max(values):
        return f"{fmt_num(m)} ({fmt_num(min(values))}–{fmt_num(max(values))})"
    return fmt_num(m)


def fmt_num(v):
    if v != v:
        return "nan"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(a, b):
    if not a or not b or b != b or a != a or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def collect(runs, impl, key, field):
    return [r[key][field] for r in runs.get(impl, [])]


def cell(runs, impls, key, field):
    """'C++ / Python (ratio)' of the medians (each with its range over repeats)."""
    vals = [collect(runs, impl, key, field) for impl in impls]
    text = " / ".join(fmt_ms(v) for v in vals)
    if len(impls) == 2:
        text += f" ({ratio(med(vals[0]), med(vals[1]))})"
    return text


def hygiene(runs, impls):
    """Failed requests (sum), fd growth (max), SIGTERM outcome, per implementation."""
    fails, fds, exits = [], [], []
    for impl in impls:
        rs = runs.get(impl, [])
        fails.append(str(sum(r[k]["non2xx"] + r[k]["socket_errors"] for r in rs for k in ("alone", "loaded_ping", "loaded_cpu"))))
        fds.append(str(max((r["fd_growth"] for r in rs), default=0)))
        outcomes = sorted(
            {
                ("0" if r["exit"] == 0 else str(r["exit"]))
                + (f", {r['leaked_processes']} workers left" if r["leaked_processes"] else "")
                for r in rs
            }
        )
        exits.append("; ".join(outcomes))
    return " / ".join(fails), " / ".join(fds), " / ".join(exits)


def build_tables(results, impls):
    """Two tables: /ping latency, then throughput and hygiene; one row per (mode, setting)."""
    latency = [["mode", "setting", "/ping alone p50", "/ping alone p99", "/ping under /cpu load p50",
                "/ping under /cpu load p99"]]
    throughput = [["mode", "setting", "/ping alone req/s", "/cpu req/s (under the mixed load)", "/cpu p99 ms",
                   "failed requests", "fd growth", "SIGTERM exit"]]
    for group in results:
        runs, mode, setting = group["runs"], group["mode"], group["setting"] or "—"
        latency.append([mode, setting] + [cell(runs, impls, k, f) for k, f in (
            ("alone", "p50_ms"), ("alone", "p99_ms"), ("loaded_ping", "p50_ms"), ("loaded_ping", "p99_ms"))])
        throughput.append([mode, setting, cell(runs, impls, "alone", "rps"), cell(runs, impls, "loaded_cpu", "rps"),
                           cell(runs, impls, "loaded_cpu", "p99_ms")] + list(hygiene(runs, impls)))
    return latency, throughput


def targets(results, impls):
    """The issue's targets, evaluated on the medians of this run."""
    lines = []
    if len(impls) != 2:
        return lines
    for group in results:
        runs = group["runs"]
        name = f"{group['mode']} {group['setting']}".strip()
        c = med(collect(runs, "cpp", "loaded_ping", "p99_ms"))
        p = med(collect(runs, "py", "loaded_ping", "p99_ms"))
        if group["mode"] in ("thread", "process"):
            lines.append((f"{name}: /ping p99 under /cpu load ≤ 1 ms", f"{fmt_num(c)} ms", c <= 1.0))
            lines.append((f"{name}: /ping p99 under load ≤ 0.5× Python's", ratio(c, p), c <= 0.5 * p))
        ca = med(collect(runs, "cpp", "alone", "rps"))
        pa = med(collect(runs, "py", "alone", "rps"))
        lines.append((f"{name}: /ping alone req/s ≥ 2× Python's", ratio(ca, pa), ca >= 2 * pa))
        if group["mode"] == "process":
            cc = med(collect(runs, "cpp", "loaded_cpu", "rps"))
            pc = med(collect(runs, "py", "loaded_cpu", "rps"))
            lines.append((f"{name}: /cpu req/s ≥ Python's", ratio(cc, pc), cc >= pc))
    return lines


def print_table(table, markdown):
    if markdown:
        print("| " + " | ".join(table[0]) + " |")
        print("|" + "---|" * len(table[0]))
        for row in table[1:]:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(*table)]
        for row in table:
            print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def print_report(results, impls, header, markdown):
    latency, throughput = build_tables(results, impls)
    who = " / ".join(IMPL_NAMES[i] for i in impls) + (" (ratio)" if len(impls) == 2 else "")
    print()
    for line in header:
        print(line)
    print()
    print(f"/ping latency, ms, {who}:")
    print()
    print_table(latency, markdown)
    print()
    print(f"Throughput and hygiene, {who}:")
    print()
    print_table(throughput, markdown)
    t = targets(results, impls)
    if t:
        print()
        if markdown:
            print_table([["target", "this run", "met"]] + [[n, v, "met" if ok else "**not met**"] for n, v, ok in t], True)
        else:
            for name, value, ok in t:
                print(f"{'met    ' if ok else 'NOT MET'}  {name}: {value}")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def find_cpp(explicit):
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            die(f"--cpp {explicit}: not an executable file")
        return os.path.abspath(explicit)
    for preset in ("release", "dev"):
        for name in ("http_service", "example_http_service"):
            p = os.path.join(ROOT, "build", preset, "examples", name)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
    die(
        "no C++ service found in build/release/examples or build/dev/examples: build it "
        "(cmake --preset release && cmake --build --preset release --target http_service) "
        "or pass --cpp PATH (or --impls py to run the Python peer alone)"
    )


def int_list(text, name, low, high):
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        die(f"{name}: expected comma-separated integers, got {text!r}")
    if not values or any(not low <= v <= high for v in values):
        die(f"{name}: every value must be in {low}..{high}, got {text!r}")
    return values


def parse_args(argv):
    cpus = available_cpus()
    ap = argparse.ArgumentParser(
        description="examples/http_service beside its asyncio peer under wrk",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("cpp_positional", nargs="?", metavar="CPP", help="the C++ service binary (same as --cpp)")
    ap.add_argument("--cpp", help="the C++ service binary (default: build/{release,dev}/examples/[example_]http_service)")
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter for the peer (default Debian's)")
    ap.add_argument("--impls", default="cpp,py", help="which servers: cpp,py (default both)")
    ap.add_argument("--modes", default="inline,thread,process")
    ap.add_argument("--workers", default=str(max(1, cpus - 1)), help=f"comma list (default {max(1, cpus - 1)} = cores - 1)")
    ap.add_argument("--nice", default="0", help="comma list of worker niceness (default 0)")
    ap.add_argument("--start", choices=("fork", "spawn", "forkserver"), help="process start method (default: the servers')")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk phase (default 5)")
    ap.add_argument("--quick", action="store_true", help="1 s phases, one repeat; failures make the exit status 1")
    ap.add_argument("--hogs", type=int, default=0, help="busy-loop processes beside the measurement")
    ap.add_argument("--target-ms", type=float, default=20.0, help="CPU time of one /cpu call (default 20)")
    ap.add_argument("--cpu-connections", type=int, default=4, help="wrk connections hammering /cpu (default 4)")
    ap.add_argument("--ping-connections", type=int, default=16, help="wrk connections on /ping alone (default 16: fewer leave the server idle between ping-pongs)")
    ap.add_argument("--probe-connections", type=int, default=1, help="wrk connections on /ping under load (default 1)")
    ap.add_argument("--probe-delay-ms", type=int, default=0, help="pause before each /ping under load (default 0)")
    ap.add_argument("--wrk", default=shutil.which("wrk"))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    if a.cpp and a.cpp_positional:
        die("give the C++ binary once (CPP or --cpp)")
    a.cpp = a.cpp or a.cpp_positional
    a.impls = [x for x in a.impls.split(",") if x]
    if not a.impls or any(i not in IMPL_NAMES for i in a.impls) or len(set(a.impls)) != len(a.impls):
        die(f"--impls: a comma list of cpp and py, got {','.join(a.impls)!r}")
    a.modes = [x for x in a.modes.split(",") if x]
    if not a.modes or any(m not in ("inline", "thread", "process") for m in a.modes):
        die("--modes: a comma list of inline, thread, process")
    a.workers = int_list(a.workers, "--workers", 1, 256)
    a.nice = int_list(a.nice, "--nice", 0, 19)
    if a.quick:
        a.repeats, a.duration = 1, 1
    for name in ("repeats", "duration", "cpu_connections", "ping_connections", "probe_connections"):
        if getattr(a, name) < 1:
            die(f"--{name.replace('_', '-')} must be at least 1")
    if a.hogs < 0 or a.probe_delay_ms < 0 or not 0.1 <= a.target_ms <= 10000:
        die("--hogs and --probe-delay-ms must be >= 0, --target-ms in 0.1..10000")
    return a


def _stop_on_signal(signum, _frame):
    # SystemExit unwinds through the finally blocks: the server is stopped,
    # the hogs killed (children also have PR_SET_PDEATHSIG as a last resort).
    sys.exit(128 + signum)


def main(argv):
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT is ignored in `cmd &` jobs
        signal.signal(sig, _stop_on_signal)
    a = parse_args(argv)
    if not a.wrk or not os.access(a.wrk, os.X_OK):
        print("bench_service_driver: wrk not found (Debian: apt-get install wrk); skipping", file=sys.stderr)
        return SKIP
    paths = {"python": a.python}
    if "cpp" in a.impls:
        paths["cpp"] = find_cpp(a.cpp)
    if "py" in a.impls and not os.access(a.python, os.X_OK):
        die(f"--python {a.python}: not executable")

    workdir = tempfile.mkdtemp(prefix="bench_service_")
    script = os.path.join(workdir, "bench.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA)

    t_start = time.monotonic()
    calibration = {}
    for impl in a.impls:
        n, ms, clock = calibrate(impl, paths, a.target_ms, a.quick, a.start)
        calibration[impl] = {"n": n, "ms_per_call": ms, "clock": clock}
        print(f"calibrated {IMPL_NAMES[impl]}: n = {n} -> {ms:.1f} ms of {clock} time per /cpu call (inline)", flush=True)

    hogs = Hogs(a.hogs) if a.hogs else None
    groups = []
    failures = []
    try:
        for mode in a.modes:
            settings = [(0, 0)] if mode == "inline" else [(w, nz) for w in a.workers for nz in a.nice]
            for workers, nice in settings:
                setting = "" if mode == "inline" else f"workers={workers} nice={nice}"
                groups.append({"mode": mode, "setting": setting, "workers": workers, "nice": nice,
                               "runs": {impl: [] for impl in a.impls}})

        class Cfg:
            pass

        cfg = Cfg()
        cfg.wrk, cfg.script, cfg.duration, cfg.quick = a.wrk, script, a.duration, a.quick
        cfg.cpu_connections, cfg.ping_connections = a.cpu_connections, a.ping_connections
        cfg.probe_connections, cfg.probe_delay_ms = a.probe_connections, a.probe_delay_ms
        for rep in range(a.repeats):
            for gi, group in enumerate(groups):
                order = a.impls if (rep + gi) % 2 == 0 else list(reversed(a.impls))
                for impl in order:
                    cfg.workers_now = group["workers"]
                    cmd = server_command(impl, paths, group["mode"], group["workers"], group["nice"], a.start)
                    r = measure_server(impl, cmd, cfg, calibration[impl]["n"])
                    group["runs"][impl].append(r)
                    fails = sum(r[k]["non2xx"] + r[k]["socket_errors"] for k in ("alone", "loaded_ping", "loaded_cpu"))
                    where = f"{IMPL_NAMES[impl]} {group['mode']} {group['setting']}".strip()
                    print(
                        f"[{rep + 1}/{a.repeats}] {where}: /ping alone p99 {r['alone']['p99_ms']:.3f} ms "
                        f"{r['alone']['rps']:.0f} req/s; under load p99 {r['loaded_ping']['p99_ms']:.3f} ms; "
                        f"/cpu {r['loaded_cpu']['rps']:.1f} req/s; failed {fails}; fd +{r['fd_growth']}; "
                        f"exit {r['exit']}",
                        flush=True,
                    )
                    if fails:
                        failures.append(f"{where}: {fails} failed requests")
                    if r["fd_growth"] > 0:
                        failures.append(f"{where}: fd count grew by {r['fd_growth']}")
                    if r["exit"] != 0:
                        failures.append(f"{where}: SIGTERM ended it with {r['exit']}\n{r['stderr']}")
                    if r["leaked_processes"]:
                        failures.append(f"{where}: {r['leaked_processes']} worker processes outlived it")
    finally:
        if hogs:
            hogs.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    loads = [r["loadavg"] for g in groups for rs in g["runs"].values() for r in rs]
    header = [
        f"bench_service: {available_cpus()} CPUs, {a.hogs} hogs"
        + (f", load average {min(loads):.1f}–{max(loads):.1f} during the runs" if loads else "")
        + f", wrk -t1: /ping alone -c{a.ping_connections}; "
        f"under load /cpu -c{a.cpu_connections} and /ping -c{a.probe_connections}"
        + (f" paced {a.probe_delay_ms} ms" if a.probe_delay_ms else "")
        + f"; {a.duration} s per phase; {a.repeats} repeats (median, range)",
        "calibrated /cpu: " + ", ".join(
            f"{IMPL_NAMES[i]} n={calibration[i]['n']} ({calibration[i]['ms_per_call']:.1f} ms {calibration[i]['clock']})"
            for i in a.impls
        ),
    ]
    print_report(groups, a.impls, header, a.markdown)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "cpus": available_cpus(),
                    "hogs": a.hogs,
                    "duration_s": a.duration,
                    "repeats": a.repeats,
                    "cpu_connections": a.cpu_connections,
                    "ping_connections": a.ping_connections,
                    "probe_connections": a.probe_connections,
                    "probe_delay_ms": a.probe_delay_ms,
                    "calibration": calibration,
                    "groups": groups,
                    "targets": [{"target": n, "value": v, "met": ok} for n, v, ok in targets(groups, a.impls)],
                    "failures": failures,
                    "seconds": time.monotonic() - t_start,
                },
                f,
                indent=1,
            )
    if failures:
        print("\nproblems:\n  " + "\n  ".join(failures), file=sys.stderr)
        if a.quick:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
