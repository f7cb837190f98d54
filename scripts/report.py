#!/usr/bin/python3
"""report.py: the benchmark report of one run, drawn from the JSON the benchmarks wrote.

    /usr/bin/python3 scripts/report.py JSONDIR OUTDIR [--results benchmarks/RESULTS.md] [--png]

Reads every *.json in JSONDIR: the tables of the benchmark programs
(benchmarks/bench_common.hpp write_json; NAME_hogs.json: the same program
under --hogs), bench_service_driver.py's JSON (bench_service*.json),
bench_crossover.json's grid, and run.json (written by `bash run.sh demo`: when
the run started, the load average then). Writes OUTDIR/index.md, plots drawn
by gnuplot as OUTDIR/*.svg (each followed by the table it is drawn from; with
--png also *.png), and the data and gnuplot scripts of the plots in
OUTDIR/plots/ (`cd OUTDIR/plots && gnuplot latency.gp` redraws one).

--results FILE replaces what lies between the lines `<!-- report:begin -->`
and `<!-- report:end -->` of FILE (benchmarks/RESULTS.md) with this run's
tables; the rest of the file is left as it is. A benchmark with no JSON is
"not measured in this run"; without gnuplot the report has tables only.
Standard library only.
"""

import argparse
import datetime
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"

# The order of the per-benchmark tables (others follow, by name).
KNOWN = ["bench_loop", "bench_offload", "bench_process", "bench_scaling", "bench_lag", "bench_fairness",
         "bench_socket", "bench_mpi", "bench_crossover"]
WHAT = {
    "bench_loop": "the event loop",
    "bench_offload": "thread offload",
    "bench_process": "process pool",
    "bench_scaling": "many pending offloads",
    "bench_lag": "loop lag while workers run",
    "bench_fairness": "a socket's wait while a task runs CPU steps",
    "bench_socket": "socket ping-pong on one loop",
    "bench_mpi": "mpi_pool vs mpi4py",
    "bench_crossover": "when offloading pays",
    "bench_service": "the HTTP service under wrk",
}
# Peers shown as one column in the plots: mpi4py is the Python peer of bench_mpi.
PEER_COLUMN = {"python": "Python", "asyncio": "Python", "mpi4py": "Python", "asio": "asio"}
COLORS = {"offload": "#1f6fb4", "C++": "#1f6fb4", "Python": "#e8740c", "asio": "#2a9d3a"}
LINE_COLORS = ["#1f6fb4", "#e8740c", "#2a9d3a", "#c0392b", "#7b4fa8", "#8c564b"]
NOT_MEASURED = "not measured in this run"


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------


def sig(v):
    """Three significant digits, no exponent, no trailing zeros."""
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a == 0:
        return "0"
    text = f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def fmt_seconds(s):
    if s is None or s != s:
        return "—"
    for unit, scale in (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3)):
        if abs(s) < scale * 1000:
            return f"{sig(s / scale)} {unit}"
    return f"{sig(s)} s"


def fmt_rate(v):
    if v >= 1e6:
        return f"{sig(v / 1e6)} M/s"
    if v >= 1e3:
        return f"{sig(v / 1e3)} k/s"
    return f"{sig(v)} /s"


def fmt_bytes(n):
    n = int(n)
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


UNIT_SECONDS = {"ns/op": 1e-9, "us/op": 1e-6, "ms/op": 1e-3}


def fmt_value(unit, v):
    if v is None:
        return "—"
    if unit in UNIT_SECONDS:
        return fmt_seconds(v * UNIT_SECONDS[unit])
    if unit == "ops/s":
        return fmt_rate(v)
    if unit.startswith("%"):
        return f"{sig(v)} %"
    return f"{sig(v)} {unit}"


def fmt_ratio(r):
    if r is None or r != r:
        return "—"
    return f"{r:.0f}×" if r >= 10 else f"{r:.2g}×"


def md_table(header, rows, keep=1):
    """A Markdown table; columns after the first `keep` with no figure in any row are left out."""
    def esc(c):
        return str(c).replace("|", "\\|").replace("\n", " ")

    empty = [i for i in range(keep, len(header)) if all(str(r[i]) in ("", "—") for r in rows)]
    if rows and empty:
        header = [h for i, h in enumerate(header) if i not in empty]
        rows = [[c for i, c in enumerate(r) if i not in empty] for r in rows]

    out = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return out


def median(values):
    v = sorted(x for x in values if x is not None and x == x)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def num(v):
    """A number for a gnuplot data file (NaN: no bar, no point)."""
    return "NaN" if v is None or v != v or v <= 0 else f"{v:.6g}"


# ---------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------


class Run:
    """Every JSON of one run, sorted by kind."""

    def __init__(self, jsondir):
        self.jsondir = jsondir
        self.files = []
        self.problems = []
        self.bench = {}  # (benchmark name, loaded?) -> JSON of a bench_common table
        self.service = {}  # loaded? -> bench_service_driver.py JSON
        self.crossover = None  # the JSON with "grid"
        self.info = {}  # run.json
        for path in sorted(glob.glob(os.path.join(jsondir, "*.json"))):
            name = os.path.basename(path)
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                self.problems.append(f"{name}: not read ({e})")
                continue
            if not isinstance(data, dict):
                self.problems.append(f"{name}: not a JSON object")
                continue
            self.files.append(name)
            stem = name[:-5]
            if stem == "run":
                self.info = data
                continue
            loaded = (data.get("hogs") or 0) > 0
            if isinstance(data.get("grid"), list) and (self.crossover is None or self.crossover.get("hogs")):
                self.crossover = data  # the idle run, where there are two
            if isinstance(data.get("results"), list):
                bench = data.get("benchmark") or re.sub(r"_hogs$", "", stem)
                self.bench.setdefault((bench, loaded), data)
            elif isinstance(data.get("groups"), list):
                self.service.setdefault(loaded, data)
            elif not isinstance(data.get("grid"), list):
                self.problems.append(f"{name}: not a benchmark's JSON (no results, groups or grid)")

    def names(self):
        found = {b for b, _ in self.bench}
        return [b for b in KNOWN if b in found] + sorted(found - set(KNOWN))

    def rows(self, bench, loaded=False):
        data = self.bench.get((bench, loaded))
        return {r.get("key"): r for r in data["results"]} if data else {}


# ---------------------------------------------------------------------------
# Machine and run
# ---------------------------------------------------------------------------


def git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def machine_lines(run):
    info = run.info
    now = datetime.datetime.now(datetime.timezone.utc)
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # (RESULTS.md aside: the report itself rewrites it)
    if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/RESULTS.md"):
        commit += " (with uncommitted changes)"
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    model = cpu_model()
    lines = [
        f"- date: {now:%Y-%m-%d %H:%M} UTC; commit {commit}",
        f"- machine: {cpus} CPUs{' (' + model + ')' if model else ''}",
    ]
    load = f"- load average (1, 5, 15 min): {loadavg()} at the end of the run"
    if info.get("loadavg_start"):
        load += f", {info['loadavg_start']} before it started"
    lines.append(load)
    if info.get("compiler") or info.get("build_type"):
        lines.append(f"- build: {info.get('compiler', '?')}, {info.get('build_type', '?')}")
    if isinstance(info.get("started_epoch"), (int, float)):
        took = now.timestamp() - info["started_epoch"]
        text = f"- the run took {took / 60:.0f} min"
        if isinstance(info.get("build_s"), (int, float)):
            text += f" (building: {info['build_s'] / 60:.1f} min)"
        lines.append(text)
    smoke = sorted({b for (b, _), d in run.bench.items() if d.get("smoke")})
    if smoke:
        lines.append(f"- **smoke sizes** (tiny, CI-sized: not representative): {', '.join(smoke)}")
    return lines


# ---------------------------------------------------------------------------
# Per-benchmark tables (bench_common's JSON)
# ---------------------------------------------------------------------------


def target_text(t, unit):
    met = t.get("met")
    verdict = "n/a" if met is None else ("met" if met else "**not met**")
    if t.get("peer"):
        return f"≤ {t.get('max_ratio', 0):.3g}× {t['peer']}: {verdict}"
    return f"≤ {fmt_value(unit, t.get('max_value'))}: {verdict}"


def bench_table(data):
    rows = data["results"]
    peers = []
    for r in rows:
        for p in r.get("peers", []):
            if p.get("name") not in peers:
                peers.append(p.get("name"))
    has_target = any(r.get("target") or r.get("targets") for r in rows)
    header = ["measurement", "offload"] + list(peers) + (["target"] if has_target else [])
    out = []
    for r in rows:
        unit = r.get("unit", "")
        cells = [r.get("label", r.get("key", "?")), fmt_value(unit, r.get("offload"))]
        by_name = {p.get("name"): p for p in r.get("peers", [])}
        for name in peers:
            p = by_name.get(name)
            if p is None:
                cells.append("")
            elif p.get("value") is None:
                cells.append(p.get("missing") or "n/a")
            else:
                cells.append(f"{fmt_value(unit, p['value'])} ({fmt_ratio(p.get('ratio'))})")
        if has_target:
            ts = r.get("targets") or ([r["target"]] if r.get("target") else [])
            cells.append("; ".join(target_text(t, unit) for t in ts) or "—")
        out.append(cells)
    # Fields beside the table shaped {"offload": x, "python": y, "goal": z} (bench_scaling's memory).
    for key, v in data.items():
        if isinstance(v, dict) and isinstance(v.get("offload"), (int, float)):
            unit = "B" if key.startswith("bytes") else ""
            cells = [key.replace("_", " "), f"{sig(v['offload'])} {unit}".strip()]
            for name in peers:
                pv = v.get(name)
                if isinstance(pv, (int, float)) and pv > 0:
                    cells.append(f"{sig(pv)} {unit} ({fmt_ratio(v['offload'] / pv)})".replace("  ", " "))
                else:
                    cells.append("")
            if has_target:
                goal = v.get("goal")
                cells.append(f"≤ {sig(goal)} {unit}: {'met' if v['offload'] <= goal else '**not met**'}"
                             if isinstance(goal, (int, float)) else "—")
            out.append(cells)
    return md_table(header, out)


def bench_heading(run, bench, loaded):
    data = run.bench[(bench, loaded)]
    text = bench
    if bench in WHAT:
        text += f": {WHAT[bench]}"
    if loaded:
        text += f", under {data['hogs']} busy-loop hog processes"
    if data.get("smoke"):
        text += " (smoke sizes)"
    return text


def all_tables(run, level, grid_note=None):
    """The table of every benchmark JSON, idle then under hogs; missing ones named. A benchmark
    with a grid (bench_crossover: a row per cell and executor) gets its crossover points instead,
    or `grid_note` where given."""
    out = []
    hashes = "#" * level
    for bench in run.names():
        for loaded in (False, True):
            if (bench, loaded) not in run.bench:
                continue
            data = run.bench[(bench, loaded)]
            out += ["", f"{hashes} {bench_heading(run, bench, loaded)}", ""]
            if isinstance(data.get("grid"), list):
                out += [grid_note] if grid_note else crossover_table(data)
            else:
                out += bench_table(data)
    missing = [b for b in KNOWN if not any((b, l) in run.bench for l in (False, True))]
    if not run.service:
        missing.append("bench_service")
    if missing:
        out += ["", f"{NOT_MEASURED.capitalize()}: {', '.join(missing)}."]
    return out


# ---------------------------------------------------------------------------
# gnuplot
# ---------------------------------------------------------------------------


class Plotter:
    def __init__(self, outdir, png):
        self.outdir = outdir
        self.plotdir = os.path.join(outdir, "plots")
        self.png = png
        self.gnuplot = shutil.which("gnuplot")
        self.problems = []

    def draw(self, name, data, body, width, height):
        """Writes plots/NAME.dat and plots/NAME.gp, runs gnuplot: NAME.svg (and .png).
        Returns the Markdown line that shows the plot (or says why it is missing)."""
        os.makedirs(self.plotdir, exist_ok=True)
        with open(os.path.join(self.plotdir, name + ".dat"), "w") as f:
            f.write(data)
        script = (
            f"# {name}: drawn by scripts/report.py from {name}.dat; run in this folder.\n"
            "# gnuplot -e 'png=1' NAME.gp draws a PNG instead of the SVG.\n"
            "set encoding utf8\n"
            "if (exists(\"png\")) {\n"
            f"  set terminal pngcairo size {width},{height} font \"DejaVu Sans,10\" noenhanced"
            " background rgb \"white\"\n"
            f"  set output \"../{name}.png\"\n"
            "} else {\n"
            f"  set terminal svg size {width},{height} dynamic font \"DejaVu Sans,12\" noenhanced"
            " background rgb \"white\"\n"
            f"  set output \"../{name}.svg\"\n"
            "}\n"
            "set micro\n" + body
        )
        with open(os.path.join(self.plotdir, name + ".gp"), "w") as f:
            f.write(script)
        if not self.gnuplot:
            return "(plot not drawn: gnuplot not found; Debian: apt-get install gnuplot-nox)"
        for extra in ([], ["-e", "png=1"]) if self.png else ([],):
            p = subprocess.run([self.gnuplot, *extra, name + ".gp"], cwd=self.plotdir, capture_output=True, text=True)
            if p.returncode != 0:
                self.problems.append(f"gnuplot {name}.gp failed: {p.stderr.strip()[-500:]}")
                return f"(plot not drawn: gnuplot failed on plots/{name}.gp)"
        return f"![{name}]({name}.svg)"


def gp_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def log_range(values, headroom=1.0):
    """[lo, hi] decades around the positive values (hi raised by `headroom` decades for the key)."""
    v = [x for x in values if x is not None and x == x and x > 0]
    if not v:
        return 1, 10
    lo = 10 ** math.floor(math.log10(min(v)) - 0.05)
    hi = 10 ** (math.ceil(math.log10(max(v)) + 0.05) + headroom)
    return lo, hi


def histogram(plotter, name, title, ylabel, yformat, categories, series, width=None, height=520):
    """Grouped bars on a log y axis. categories: labels ("\\n" breaks lines);
    series: (title, colour, hatched, [value per category]); values in the
    axis's unit (None: no bar). Series with no value at all are left out."""
    series = [s for s in series if any(v is not None and v > 0 for v in s[3])]
    if not series or not categories:
        return None
    lines = ["# " + " | ".join(s[0] for s in series)]
    for i, c in enumerate(categories):
        lines.append(" ".join(num(s[3][i]) for s in series) + "   # " + c.replace("\n", " "))
    lo, hi = log_range([v for s in series for v in s[3]], headroom=0)
    longest = max(len(line) for c in categories for line in c.split("\n"))
    width = width or max(720, 110 + len(categories) * max(16 * len(series) + 36, 7.5 * longest + 16))
    width = int(width)
    label_lines = max(c.count("\n") + 1 for c in categories)
    key_cols = max(1, min(len(series), (width - 60) // 180))
    key_rows = math.ceil(len(series) / key_cols)
    xtics = ", ".join(f"{gp_str(c)} {i}" for i, c in enumerate(categories))
    plots = []
    for i, (t, colour, hatched, _) in enumerate(series):
        fs = "fs pattern 4 border lc rgb " + gp_str(colour) if hatched else "fs solid 0.9 border lc rgb \"#333333\""
        source = gp_str(name + ".dat") if i == 0 else '""'
        plots.append(f"{source} using {i + 1} title {gp_str(t)} lc rgb {gp_str(colour)} {fs}")
    body = (
        f"set title {gp_str(title)}\n"
        "set style data histograms\n"
        "set style histogram clustered gap 1.2\n"
        "set boxwidth 0.92 relative\n"
        "set logscale y\n"
        f"set yrange [{lo:g}:{hi:g}]\n"
        f"set format y {gp_str(yformat)}\n"
        f"set ylabel {gp_str(ylabel)}\n"
        f"set xtics ({xtics}) nomirror scale 0\n"
        f"set xrange [-0.6:{len(categories) - 0.4}]\n"
        "set grid ytics mytics lc rgb \"#e4e4e4\" lw 1, lc rgb \"#f2f2f2\" lw 1\n"
        f"set key outside below center horizontal samplen 2 width 1 maxcols {key_cols}\n"
        f"set bmargin {label_lines + 1.5 + 1.3 * key_rows:g}\n"
        "set border 3\n"
        "set ytics nomirror\n"
        "plot " + ", \\\n     ".join(plots) + "\n"
    )
    return plotter.draw(name, "\n".join(lines) + "\n", body, width, height)


# ---------------------------------------------------------------------------
# (a) latency: round trip through a thread or a process
# ---------------------------------------------------------------------------


def latency_rows(run):
    """(bar-group label or None: in the table only, table label, benchmark, key)."""
    out = []
    for key in ("to_thread", "run_in_executor"):  # the same path: run_in_executor in the table only
        for stat in ("median", "p99"):
            out.append((f"thread\n{key}\n{stat}" if key == "to_thread" else None, f"thread, {key}, {stat}",
                        "bench_offload", f"{key}_{stat}"))
    methods = [m for m in ("fork", "forkserver", "spawn")
               if any(f"{m}_seq_median" in run.rows("bench_process", loaded) for loaded in (False, True))]
    for m in methods:
        for stat in ("median", "p99"):
            out.append((f"process\n{m}\n{stat}", f"process ({m}), {stat}", "bench_process", f"{m}_seq_{stat}"))
    for stat in ("median", "p99"):
        out.append((f"MPI rank\nmpi_pool\n{stat}", f"MPI rank (vs mpi4py), {stat}", "bench_mpi", f"rt_{stat}"))
    return out


def peer_value(row, column):
    if not row:
        return None
    if column == "offload":
        return row.get("offload")
    for p in row.get("peers", []):
        if PEER_COLUMN.get(p.get("name")) == column and p.get("value") is not None:
            return p["value"]
    return None


def in_seconds(row, v):
    return None if v is None else v * UNIT_SECONDS.get(row.get("unit"), float("nan"))


def hogs_of(run, benches):
    n = {run.bench[(b, True)].get("hogs") for b in benches if (b, True) in run.bench}
    return "/".join(str(x) for x in sorted(n)) if n else None


def section_latency(run, plotter):
    out = ["## Round trip through a worker thread, process or MPI rank", ""]
    rows = []
    for cat, label, bench, key in latency_rows(run):
        idle, loaded = run.rows(bench).get(key), run.rows(bench, True).get(key)
        if idle or loaded:
            rows.append((cat, label, idle, loaded))
    if not rows:
        return out + [f"bench_offload, bench_process, bench_mpi: {NOT_MEASURED}."]
    hogs = hogs_of(run, ["bench_offload", "bench_process", "bench_mpi"])
    load = f"{hogs} hogs" if hogs else "under load"
    out.append(
        "One no-op call and its answer, awaited from the event loop, one after another: offload beside "
        "Python's asyncio (`asyncio.to_thread`, `run_in_executor` on a `ProcessPoolExecutor`, mpi4py's "
        "`MPIPoolExecutor`) and asio (`co_spawn`, post to a thread pool and back). Solid bars: idle machine"
        + (f"; hatched: the same program with {hogs} busy-loop hog processes beside every column" if hogs else "")
        + ". Log scale: lower is better. (run_in_executor on a thread pool: in the table only; "
        "it takes the path of to_thread.)")
    out.append("")
    plotted = [r for r in rows if r[0]]
    series = []
    for column in ("offload", "Python", "asio"):
        for loaded in (False, True):
            values = [in_seconds(r[3 if loaded else 2] or {}, peer_value(r[3 if loaded else 2], column))
                      for r in plotted]
            series.append((f"{column}, {load if loaded else 'idle'}", COLORS[column], loaded, values))
    line = histogram(plotter, "latency", "Round trip of a no-op call (lower is better)",
                     "time per round trip (log scale)", "%.0s %cs", [r[0] for r in plotted], series)
    out += [line or "(nothing to plot)", ""]
    header = ["round trip", "offload", "Python", "asio"]
    if hogs:
        header += [f"offload, {load}", f"Python, {load}", f"asio, {load}"]
    table = []
    for _, label, idle, loaded in rows:
        cells = [label]
        for r in (idle, loaded) if hogs else (idle,):
            for column in ("offload", "Python", "asio"):
                cells.append(fmt_seconds(in_seconds(r or {}, peer_value(r, column))))
        table.append(cells)
    out += md_table(header, table)
    floor = run.rows("bench_offload").get("to_thread_median")
    ev = [p for p in (floor or {}).get("peers", []) if p.get("name") == "eventfd" and p.get("value")]
    if ev:
        out += ["", f"The floor of a blocking wake between two threads (eventfd ping-pong) measured "
                    f"{fmt_value(floor['unit'], ev[0]['value'])} (median) in the same run."]
    return out


# ---------------------------------------------------------------------------
# (b) throughput: the rows whose unit is a rate
# ---------------------------------------------------------------------------


def short_label(label, width=16):
    """A bar-group label from a row label: a few words a line."""
    label = re.sub(r"^(fork|spawn|forkserver): ", r"\1\n", label)
    out = []
    for part in label.split("\n"):
        cur = ""
        for w in part.split():
            if cur and len(cur) + 1 + len(w) > width:
                out.append(cur)
                cur = w
            else:
                cur = f"{cur} {w}".strip()
        out.append(cur)
    return "\n".join(out)


def pair_rows(idle, loaded, keep):
    """[(idle row or None, loaded row or None)] of the rows `keep` accepts. A row pairs with the
    row of the same key; else with the one whose key differs only in its sizes (the runs under
    hogs use smaller sizes: fork_map_1000000_c1000 / fork_map_100000_c1000), where that is unique."""
    a = [r for r in idle.values() if keep(r)]
    b = [r for r in loaded.values() if keep(r)]
    by_key = {r.get("key"): r for r in b}
    pairs = [(r, by_key.get(r.get("key"))) for r in a]
    used = {id(l) for _, l in pairs if l}
    rest_a = [i for i, (r, l) in enumerate(pairs) if l is None]
    rest_b = [r for r in b if id(r) not in used]

    def shape(r):
        return re.sub(r"(?<![a-z0-9])\d+", "N", r.get("key", ""))

    for i in rest_a:
        s = shape(pairs[i][0])
        same_a = [j for j in rest_a if shape(pairs[j][0]) == s]
        same_b = [r for r in rest_b if shape(r) == s]
        if len(same_a) == 1 and len(same_b) == 1:
            pairs[i] = (pairs[i][0], same_b[0])
            used.add(id(same_b[0]))
    return pairs + [(None, r) for r in b if id(r) not in used]


def section_throughput(run, plotter):
    out = ["## Throughput", ""]
    benches = [b for b in run.names()
               if any(r.get("unit") == "ops/s" and not r.get("key", "").startswith("debug_")
                      for l in (False, True) for r in run.rows(b, l).values())]
    if not benches:
        return out + [f"Rates (bench_loop, bench_offload, bench_process, bench_mpi): {NOT_MEASURED}."]
    out += ["Calls (or callbacks) completed per second, higher is better, log scale. Solid bars: idle machine; "
            "hatched: under busy-loop hogs, where that run exists. The debug-mode rows of bench_loop compare offload "
            "with itself: in the table below only.", ""]
    for bench in benches:
        rows = pair_rows(run.rows(bench), run.rows(bench, True),
                         lambda r: r.get("unit") == "ops/s" and not r.get("key", "").startswith("debug_"))
        hogs = hogs_of(run, [bench])
        load = f"{hogs} hogs" if hogs else "under load"
        keys = [(i or l).get("key") for i, l in rows]
        cats = [short_label((i or l).get("label", k)) for (i, l), k in zip(rows, keys)]
        series = []
        for column in ("offload", "Python", "asio"):
            for is_loaded in (False, True):
                series.append((f"{column}, {load if is_loaded else 'idle'}", COLORS[column], is_loaded,
                               [peer_value(r[1 if is_loaded else 0], column) for r in rows]))
        out += [f"### {bench}: {WHAT.get(bench, '')}".rstrip(": "), ""]
        line = histogram(plotter, f"throughput_{bench}", f"{bench}: throughput (higher is better)",
                         "calls (map: items) per second, log scale", "%.0s %c/s", cats, series)
        out += [line or "(nothing to plot)", ""]
        header = ["measurement", "offload", "Python", "asio"]
        if hogs:
            header += [f"offload, {load}", f"Python, {load}", f"asio, {load}"]
        table = []
        for (i, l), k in zip(rows, keys):
            cells = [(i or l).get("label", k)]
            if i and l and l.get("label") != i.get("label"):
                prefix = os.path.commonprefix([i.get("label", ""), l.get("label", "")])
                prefix = prefix[: prefix.rfind(": ") + 2] if ": " in prefix else ""
                cells[0] += f" (under hogs: {l.get('label', '')[len(prefix):]})"
            for r in ((i, l) if hogs else (i,)):
                for column in ("offload", "Python", "asio"):
                    v = peer_value(r, column)
                    cells.append(fmt_rate(v) if v is not None else "—")
            table.append(cells)
        out += md_table(header, table) + [""]
    return out


# ---------------------------------------------------------------------------
# (c) the HTTP service (bench_service_driver.py)
# ---------------------------------------------------------------------------


def service_medians(group, impl, phase, field):
    """The median over repeats; a latency of a phase that got no answer (0 requests) is no figure."""
    runs = [r.get(phase, {}) for r in group.get("runs", {}).get(impl, [])]
    if field != "rps":
        runs = [r for r in runs if r.get("requests", 1) > 0]
    return median(r.get(field) for r in runs)


def service_groups(run):
    """(category, loaded?, group, hogs) over the idle run, then the loaded one."""
    out = []
    for loaded in (False, True):
        data = run.service.get(loaded)
        if not data:
            continue
        settings = {g.get("mode"): 0 for g in data["groups"]}
        for g in data["groups"]:
            settings[g.get("mode")] += 1
        for g in data["groups"]:
            cat = g.get("mode", "?")
            if settings[g.get("mode")] > 1 and g.get("setting"):
                cat += "\n" + g["setting"]
            if loaded:
                cat += f"\n{data.get('hogs')} hogs"
            out.append((cat, loaded, g, data.get("hogs", 0)))
    return out


def section_service(run, plotter, level=2):
    """With plotter None: the table only (RESULTS.md)."""
    out = ["#" * level + " bench_service: the HTTP service, /ping latency beside CPU-heavy requests", ""]
    groups = service_groups(run)
    if not groups:
        return out + [f"bench_service (benchmarks/bench_service_driver.py): {NOT_MEASURED}."]
    any_data = next(iter(run.service.values()))
    cal = any_data.get("calibration", {})
    cal_text = ", ".join(f"{'C++' if i == 'cpp' else 'Python'} n={c.get('n')} ({c.get('ms_per_call', 0):.1f} ms)"
                         for i, c in cal.items())
    out += [
        "examples/http_service (C++) and its asyncio peer (benchmarks/bench_service.py) under wrk: the p99 latency "
        "of /ping alone, and of /ping while other connections keep /cpu busy (each /cpu call is calibrated to the "
        f"same CPU time: {cal_text}). Mode: where /cpu runs (inline: on the loop thread; thread or process: "
        "offloaded to a pool)."
        + (" Solid: /ping alone; hatched: /ping under /cpu load. Lower is better, log scale." if plotter else ""),
        "",
    ]
    impls = ("cpp", "py")
    names = {"cpp": "C++", "py": "Python"}
    if plotter:
        series = []
        for phase, hatched, what in (("alone", False, "/ping alone"), ("loaded_ping", True, "/ping under /cpu load")):
            for impl in impls:
                values = [service_medians(g, impl, phase, "p99_ms") for _, _, g, _ in groups]
                series.append((f"{names[impl]}, {what}", COLORS[names[impl]], hatched,
                               [None if v is None else v / 1000 for v in values]))
        line = histogram(plotter, "service", "HTTP service: /ping p99 latency (lower is better)",
                         "/ping p99 latency (log scale)", "%.0s %cs", [c for c, _, _, _ in groups], series)
        out += [line or "(nothing to plot)", ""]
    header = ["mode", "hogs", "/ping p99 alone, C++ / Python", "/ping p99 under /cpu load, C++ / Python (ratio)",
              "/ping p50 under /cpu load", "/ping alone req/s", "/cpu req/s under the mixed load"]
    table = []
    for cat, _, g, hogs in groups:
        def pair(phase, field, fmt, with_ratio=False):
            c, p = (service_medians(g, i, phase, field) for i in impls)
            text = f"{fmt(c)} / {fmt(p)}"
            if with_ratio and c and p:
                text += f" ({fmt_ratio(c / p)})"
            return text

        ms = lambda v: fmt_seconds(None if v is None else v / 1000)  # noqa: E731
        rate = lambda v: "—" if v is None else f"{v:,.0f}"  # noqa: E731
        mode = g.get("mode", "?") + (f" ({g['setting']})" if g.get("setting") else "")
        table.append([mode, str(hogs), pair("alone", "p99_ms", ms), pair("loaded_ping", "p99_ms", ms, True),
                      pair("loaded_ping", "p50_ms", ms), pair("alone", "rps", rate), pair("loaded_cpu", "rps", rate)])
    out += md_table(header, table)
    runs = [(f"{run.service[l].get('hogs')} hogs" if l else "idle", run.service[l]) for l in (False, True)
            if l in run.service]
    names_t = []
    for _, data in runs:
        for t in data.get("targets") or []:
            if t.get("target") not in names_t:
                names_t.append(t.get("target"))
    if names_t:
        cells = []
        for name in names_t:
            row = [name]
            for _, data in runs:
                t = next((t for t in data.get("targets") or [] if t.get("target") == name), None)
                row.append("—" if t is None else f"{t.get('value')}: {'met' if t.get('met') else '**not met**'}")
            cells.append(row)
        out += ["", "The issue's targets, on this run's medians:", ""]
        out += md_table(["target"] + [w for w, _ in runs], cells)
    out.append("")
    for when, data in runs:
        line = (f"- run {when}: {data.get('repeats')} repeats of {data.get('duration_s')} s per phase (medians; "
                "—: wrk got no answer in that phase), "
                f"{data.get('cpus')} CPUs, {data.get('seconds', 0) / 60:.1f} min.")
        if data.get("failures"):
            line += " Problems: " + "; ".join(str(f).split("\n")[0] for f in data["failures"]) + "."
        out.append(line)
    return out


# ---------------------------------------------------------------------------
# (d) crossover: when does offloading pay?
# ---------------------------------------------------------------------------


def pick_sizes(sizes):
    sizes = sorted(set(sizes))
    if len(sizes) <= 3:
        return sizes
    return [sizes[0], sizes[len(sizes) // 2], sizes[-1]]


def crossover_curves(grid):
    """{(impl, executor, payload, bytes): [(work_ns, speed-up)]}: inline ns per call over the executor's."""
    inline = {}
    for g in grid:
        if g.get("executor") == "inline":
            inline[(g.get("impl"), g.get("payload"), g.get("bytes"), g.get("work_ns"))] = g.get("ns_per_call")
    curves = {}
    for g in grid:
        if g.get("executor") == "inline":
            continue
        impl, payload, nbytes, work = g.get("impl"), g.get("payload"), g.get("bytes"), g.get("work_ns")
        base = inline.get((impl, payload, nbytes, work)) or inline.get((impl, "value", nbytes, work))
        if base is None:
            base = next((v for (i, p, b, w), v in inline.items() if i == impl and b == nbytes and w == work), None)
        x = g.get("ns_per_call")
        speed = base / x if base and x else None
        curves.setdefault((impl, g.get("executor"), payload, nbytes), []).append((work, speed))
    for c in curves.values():
        c.sort(key=lambda p: (p[0] is None, p[0] or 0))
    return curves


def section_crossover(run, plotter):
    out = ["## When does offloading pay? Speed-up against the work per call", ""]
    data = run.crossover
    if not data or not data.get("grid"):
        return out + [f"bench_crossover: {NOT_MEASURED}."]
    grid = data["grid"]
    curves = crossover_curves(grid)
    if not curves:
        return out + ["bench_crossover: its grid has no thread or process runs beside inline ones."]
    smoke = " (smoke sizes)" if data.get("smoke") else ""
    out += [
        f"bench_crossover{smoke}: the same calls made inline on the loop thread, or offloaded to a thread pool or "
        "a process pool (arguments by value, or in a shared buffer), for growing CPU work per call. Speed-up = "
        "inline time per call / offloaded time per call: above 1, offloading pays. One line per implementation "
        "and payload size (solid: offload, dashed: Python); log scales.",
        "",
    ]
    panels = []
    for executor in ("thread", "process"):
        for payload in ("value", "shared"):
            if any(k[1] == executor and k[2] == payload for k in curves):
                panels.append((executor, payload))
    for k in curves:  # executors or payloads this script does not know
        if (k[1], k[2]) not in panels:
            panels.append((k[1], k[2]))
    sizes = pick_sizes(k[3] for k in curves)
    blocks, index = [], 0
    body = []
    cols = 2 if len(panels) > 1 else 1
    rows_n = (len(panels) + cols - 1) // cols
    speeds = [s for c in curves.values() for _, s in c if s]
    lo, hi = log_range(speeds, headroom=0.3)
    lo, hi = min(lo, 0.1), max(hi, 10)
    works = [w for c in curves.values() for w, _ in c if w]
    xlo, xhi = (min(works) / 1.6, max(works) * 1.6) if works else (1, 1e7)
    key_rows = max(1, len(sizes))
    reserve = 70 + 19 * key_rows  # above the panels: the title and one legend for all of them
    height = 430 * rows_n + reserve
    top = 1 - reserve / height
    body.append(f"set multiplot layout {rows_n},{cols} margins 0.07,0.98,{50 / height:.3f},{top:.3f} "
                "spacing 0.08,0.1 title "
                + gp_str("Speed-up of offloading vs running inline, by CPU work per call (above 1: offloading pays)"))
    body.append("set logscale xy\nset format x \"%.0s %cs\"\nset format y \"%g×\"")
    body.append(f"set xrange [{xlo * 1e-9:g}:{xhi * 1e-9:g}]\nset yrange [{lo:g}:{hi:g}]")
    body.append("set xlabel \"CPU work per call (log scale)\"\nset ylabel \"speed-up vs inline (log scale)\"")
    body.append("set grid xtics ytics lc rgb \"#e4e4e4\"")
    body.append(f"set key at screen 0.5,screen {1 - 38 / height:.3f} center top vertical maxrows {key_rows} "
                "samplen 3 width 2")
    names = {"thread": "thread pool", "process": "process pool", "value": "arguments by value",
             "shared": "shared buffer"}

    def style(impl, nbytes):
        colour = LINE_COLORS[sizes.index(nbytes) % len(LINE_COLORS)]
        first = impl == "offload"
        return f"lc rgb {gp_str(colour)} lw 2 dt {1 if first else 2} pt {7 if first else 6} ps 0.8"

    entries = [(impl, nbytes) for impl in ("offload", "python") for nbytes in sizes
               if any((impl, k[1], k[2], nbytes) in curves for k in curves)]
    for panel_i, (executor, payload) in enumerate(panels):
        plots = []
        for impl, nbytes in entries:
            pts = curves.get((impl, executor, payload, nbytes))
            if not pts:
                continue
            blocks.append(f"# {impl} {executor} {payload} {nbytes}\n"
                          + "\n".join(f"{num((w or 0) * 1e-9)} {num(s)}" for w, s in pts))
            plots.append(f"\"crossover.dat\" index {index} using 1:2 with linespoints notitle {style(impl, nbytes)}")
            index += 1
        plots.append("1 with lines lc rgb \"#444444\" lw 1.5 dt 3 notitle")
        if panel_i == 0:  # the one legend, for every panel
            plots += [f"keyentry with linespoints {style(impl, nbytes)} "
                      f"title {gp_str(('offload' if impl == 'offload' else 'Python') + ', ' + fmt_bytes(nbytes))}"
                      for impl, nbytes in entries]
            plots.append("keyentry with lines lc rgb \"#444444\" lw 1.5 dt 3 title \"break-even (= inline)\"")
        body.append(f"set title {gp_str(names.get(executor, executor) + ', ' + names.get(payload, payload))}")
        body.append("plot " + ", \\\n     ".join(plots))
    body.append("unset multiplot")
    line = plotter.draw("crossover", "\n\n\n".join(blocks) + "\n", "\n".join(body) + "\n", 1200, height)
    out += [line, ""]
    # The data of the plot: speed-up per work size, every payload size.
    works_all = sorted({w for c in curves.values() for w, _ in c if w is not None})
    header = ["impl", "executor", "payload", "bytes"] + [fmt_seconds(w * 1e-9) for w in works_all]
    table = []
    order = {"offload": 0, "python": 1, "thread": 0, "process": 1, "value": 0, "shared": 1}

    def sort_key(kv):
        impl, executor, payload, nbytes = kv[0]
        return (order.get(impl, 9), str(impl), order.get(executor, 9), str(executor), order.get(payload, 9),
                str(payload), nbytes or 0)

    for (impl, executor, payload, nbytes), pts in sorted(curves.items(), key=sort_key):
        by_work = dict(pts)
        table.append([impl, executor, payload, fmt_bytes(nbytes or 0)]
                     + [fmt_ratio(by_work.get(w)) for w in works_all])
    out += ["Speed-up vs inline (inline ns per call / offloaded ns per call), by CPU work per call:", ""]
    out += md_table(header, table) + [""]
    out += crossover_table(data)
    return out


def crossover_table(data):
    points = data.get("crossover") or []
    if not points:
        return ["No crossover points in the JSON."]
    works = [g.get("work_ns") for g in data.get("grid", []) if g.get("work_ns")]
    hi = max(works) if works else None
    lo = min(works) if works else None
    order = {"thread": 0, "process": 1, "value": 0, "shared": 1}
    cells = {}  # (executor, payload, bytes) -> {impl: text}
    for c in points:
        note = c.get("note")
        if note == "never":
            where = f"never (not up to {fmt_seconds(hi * 1e-9)})" if hi else "never"
        elif note == "always":
            where = f"always (already at {fmt_seconds(lo * 1e-9)})" if lo else "always"
        else:
            where = fmt_seconds(c["work_ns"] * 1e-9) if c.get("work_ns") is not None else "—"
        key = (c.get("executor", "?"), c.get("payload", "?"), c.get("bytes") or 0)
        cells.setdefault(key, {})[c.get("impl", "?")] = where
    impls = [i for i in ("offload", "python") if any(i in v for v in cells.values())]
    impls += sorted({i for v in cells.values() for i in v} - set(impls))
    table = [[e, p, fmt_bytes(b)] + [v.get(i, "—") for i in impls]
             for (e, p, b), v in sorted(cells.items(), key=lambda kv: (order.get(kv[0][0], 9), str(kv[0][0]),
                                                                       order.get(kv[0][1], 9), str(kv[0][1]),
                                                                       kv[0][2]))]
    names = {"offload": "offload pays from", "python": "Python pays from"}
    return (["Crossover: the CPU work per call from which offloading beats running inline "
             "(interpolated between the measured sizes):", ""]
            + md_table(["executor", "payload", "bytes"] + [names.get(i, f"{i} pays from") for i in impls], table))


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def index_md(run, plotter):
    out = ["# Benchmark report", "", "Generated by `scripts/report.py` from the JSON of one run "
           f"(`{os.path.relpath(run.jsondir, ROOT) if run.jsondir.startswith(ROOT) else run.jsondir}`).", ""]
    out += machine_lines(run)
    out += ["", "In the tables, the figure in brackets after a peer's is the cost ratio, offload cost / peer cost: "
                "below 1×, offload is faster. Machines shared with other work give noisy figures: compare the columns "
                "of one run, not runs.", ""]
    for section in (section_latency, section_throughput, section_service, section_crossover):
        out += section(run, plotter) + [""]
    out += ["## Every table of the run", "",
            "Each benchmark's table as the program printed it (values, cost ratios, targets)."]
    out += all_tables(run, 3, grid_note="Its grid, as speed-ups, and its crossover points: in \"When does "
                      "offloading pay?\" above (the program's log has every cell's ns per call).")
    out += ["", "## Files", "", f"JSON read: {', '.join(run.files) or 'none'}."]
    logs = os.path.join(os.path.dirname(os.path.abspath(run.jsondir)), "logs")
    if os.path.isdir(logs):
        where = os.path.relpath(logs, plotter.outdir)
        out.append(f"Each program's output: `{logs if where.startswith('..') else where}/`.")
        stems = {f[:-5] for f in run.files}
        only = sorted(f[:-4] for f in os.listdir(logs)
                      if f.startswith("bench_") and f.endswith(".log") and f[:-4] not in stems)
        if only:
            out.append(f"Output only, no JSON (see their logs): {', '.join(only)}.")
    problems = run.problems + plotter.problems
    if problems:
        out += ["", "Problems: " + "; ".join(problems)]
    return "\n".join(out).rstrip() + "\n"


def results_section(run, outdir):
    where = os.path.relpath(os.path.join(outdir, "index.md"), ROOT) if os.path.abspath(outdir).startswith(ROOT) \
        else os.path.join(outdir, "index.md")
    out = ["## Latest run (generated)", "",
           "Written by `scripts/report.py --results` from the JSON of `bash run.sh demo`; do not edit by hand. "
           f"The plots of this run, with these tables, are in `{where}` (generated, not committed).", ""]
    out += machine_lines(run)
    out += ["", "Brackets: the cost ratio offload / peer (below 1×: offload faster)."]
    out += all_tables(run, 3)
    if run.service:
        out += [""] + section_service(run, None, level=3)
    return out


def replace_between_markers(path, lines):
    with open(path) as f:
        text = f.read()
    b, e = text.find(BEGIN), text.find(END)
    if b < 0 or e < 0 or e < b:
        raise SystemExit(f"report.py: {path} lacks the lines {BEGIN} and {END} (in that order): left unchanged")
    new = text[: b + len(BEGIN)] + "\n\n" + "\n".join(lines).strip("\n") + "\n\n" + text[e:]
    with open(path, "w") as f:
        f.write(new)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("jsondir", help="the folder of the run's JSON files")
    ap.add_argument("outdir", help="where index.md and the plots go")
    ap.add_argument("--results", metavar="FILE",
                    help="also replace the generated section of FILE (benchmarks/RESULTS.md)")
    ap.add_argument("--png", action="store_true", help="draw each plot as a PNG too")
    a = ap.parse_args(argv)
    if not os.path.isdir(a.jsondir):
        print(f"report.py: {a.jsondir}: no such folder (nothing measured?); the report says so", file=sys.stderr)
    run = Run(a.jsondir)
    os.makedirs(a.outdir, exist_ok=True)
    plotter = Plotter(a.outdir, a.png)
    text = index_md(run, plotter)
    with open(os.path.join(a.outdir, "index.md"), "w") as f:
        f.write(text)
    print(f"report: {os.path.join(a.outdir, 'index.md')} ({len(run.files)} JSON files)")
    if a.results:
        replace_between_markers(a.results, results_section(run, a.outdir))
        print(f"report: {a.results}: the section between {BEGIN} and {END} replaced")
    for p in run.problems + plotter.problems:
        print(f"report: {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
