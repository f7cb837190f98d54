#!/usr/bin/python3
"""report_test.py: scripts/report.py on the JSON in tests/data/report (small runs
and a made-up bench_crossover.json), into WORKDIR (argument; default a temporary
folder). Checks that index.md has every section, says "not measured in this run"
for what is missing, that --results replaces only the lines between the markers
(and refuses a file without them), and, where gnuplot is installed, that each
plot was drawn as SVG. Standard library only; exit status 0 when all hold."""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REPORT = os.path.join(ROOT, "scripts", "report.py")
DATA = os.path.join(HERE, "data", "report")

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def report(*args):
    return subprocess.run([sys.executable, REPORT, *args], capture_output=True, text=True)


def main(argv):
    work = argv[0] if argv else tempfile.mkdtemp(prefix="report_test_")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    jsondir, out = os.path.join(work, "json"), os.path.join(work, "out")
    shutil.copytree(DATA, jsondir)
    results = os.path.join(work, "RESULTS.md")
    before, after = "# Results\n\nIntro.\n\n", "\n## History\n\nold figures | 1 µs\n"
    with open(results, "w") as f:
        f.write(before + "<!-- report:begin -->\nplaceholder\n<!-- report:end -->\n" + after)

    p = report(jsondir, out, "--results", results)
    check(p.returncode == 0, f"report.py exits 0 ({p.returncode}: {p.stderr.strip()[-300:]})")
    with open(os.path.join(out, "index.md")) as f:
        index = f.read()
    for heading in ("## Round trip through", "## Throughput", "## bench_service", "## When does offloading pay",
                    "## Every table of the run"):
        check(heading in index, f"index.md has the section '{heading}'")
    check("| thread, to_thread, median |" in index, "the latency table has the to_thread row")
    check("offload, 2 hogs" in index, "the latency table has the run under hogs")
    check("| inline | 0 |" in index and "| process (workers=1 nice=0) | 2 |" in index,
          "the service table has the idle and the hogs runs")
    check("| offload pays from | Python pays from |" in index and "never (not up to" in index, "the crossover table")
    check("measured in this run: bench_loop, bench_process" in index, "the missing benchmarks are named as such")

    if shutil.which("gnuplot"):
        for name in ("latency", "throughput_bench_offload", "service", "crossover"):
            svg = os.path.join(out, name + ".svg")
            ok = os.path.isfile(svg) and "<svg" in open(svg).read(4000)
            check(ok, f"{name}.svg drawn")
            check(f"]({name}.svg)" in index, f"index.md shows {name}.svg")
    else:
        print("skip gnuplot not installed: no SVG checks")
        check("gnuplot not found" in index, "index.md says the plots need gnuplot")

    with open(results) as f:
        text = f.read()
    check(text.startswith(before + "<!-- report:begin -->\n") and text.endswith("<!-- report:end -->\n" + after),
          "--results keeps what lies outside the markers")
    check("placeholder" not in text and "### bench_offload" in text and "### bench_service" in text,
          "--results writes this run's tables between the markers")
    check("](" not in text.split("<!-- report:begin -->")[1].split("<!-- report:end -->")[0],
          "RESULTS.md gets no image links")
    p = report(jsondir, out, "--results", results)
    with open(results) as f:
        again = f.read()
    check(p.returncode == 0 and again.count("<!-- report:begin -->") == 1 and again.endswith(after),
          "a second --results run replaces the section again")

    no_markers = os.path.join(work, "no_markers.md")
    with open(no_markers, "w") as f:
        f.write("# no markers\n")
    p = report(jsondir, out, "--results", no_markers)
    check(p.returncode != 0 and open(no_markers).read() == "# no markers\n",
          "a file without markers is refused and left unchanged")

    empty = os.path.join(work, "empty")
    os.makedirs(empty)
    p = report(empty, os.path.join(work, "out_empty"))
    with open(os.path.join(work, "out_empty", "index.md")) as f:
        text = f.read()
    check(p.returncode == 0 and text.count("not measured in this run") >= 4,
          "no JSON at all: exit 0, every section not measured")

    if failures:
        print(f"\n{len(failures)} checks failed (output in {work})")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
