#!/usr/bin/env python3
"""Checks the include architecture of include/offload (a CTest entry).

1. No include cycle among offload's headers.
2. Layers point down: a header in detail/<layer>/ includes only detail layers
   below or beside it, and only the public "base" headers its layer builds on
   (each detail/<layer>/README.md states the same list).
3. Nothing includes the umbrella <offload/offload.hpp>.
4. What a TU pays for: <offload/to_thread.hpp> pulls in no process-pool or
   codec header, and <offload/task.hpp> + <offload/run.hpp> no executor at
   all. Checked on the include graph and, with --cxx, on what the compiler
   really opens (g++/clang -H), which also catches system headers such as
   <dlfcn.h> and <cxxabi.h> that only the process pool needs.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*<(offload/[^>]+)>', re.M)

# detail layer -> detail layers it may include (itself included).
DETAIL_DEPS = {
    "base": {"base"},
    "loop": {"base", "loop"},
    "tasks": {"base", "loop", "tasks"},
    "threads": {"base", "loop", "tasks", "threads"},
    "codec": {"base", "codec"},
    "process": {"base", "loop", "tasks", "codec", "process"},
    "net": {"base", "net"},
}

# detail layer -> public headers it may include (the base each builds on).
PUBLIC_BASE = {
    "base": set(),
    "loop": {"errors.hpp", "slow_callback.hpp"},
    "tasks": {"errors.hpp", "task.hpp"},
    "threads": {"errors.hpp", "executor.hpp"},
    "codec": {"codec.hpp"},
    "process": {"errors.hpp", "executor.hpp", "codec.hpp", "serialize.hpp", "process_pool_options.hpp",
                "available_cpus.hpp"},
    "net": {"stream_errors.hpp", "stream_options.hpp"},
}

# What a TU that includes the first headers must never reach.
FORBIDDEN_CLOSURES = [
    (["offload/to_thread.hpp"],
     [r"^offload/detail/process/", r"^offload/detail/codec/", r"^offload/process_pool", r"^offload/serialize\.hpp$",
      r"^offload/codec\.hpp$", r"^offload/shared_buffer\.hpp$"]),
    (["offload/task.hpp", "offload/run.hpp"],
     [r"^offload/detail/(threads|process|codec)/", r"^offload/(thread_pool|process_pool|to_thread|serialize|codec)"]),
]
# System headers the compiler must not open for those TUs (-H check).
FORBIDDEN_SYSTEM = [
    (["offload/to_thread.hpp"], [r"/dlfcn\.h$", r"/cxxabi\.h$", r"/link\.h$", r"/offload/detail/process/",
                                 r"/fstream$", r"/iostream$"]),
    (["offload/task.hpp", "offload/run.hpp"], [r"/offload/detail/threads/", r"/offload/detail/process/",
                                              r"/fstream$", r"/iostream$"]),
]


def load_graph(root: Path):
    graph = {}
    for path in sorted(root.glob("offload/**/*.hpp")):
        rel = path.relative_to(root).as_posix()
        graph[rel] = INCLUDE_RE.findall(path.read_text())
    return graph


def layer_of(header: str):
    parts = header.split("/")
    if len(parts) >= 3 and parts[1] == "detail":
        return parts[2]
    return None


def find_cycles(graph):
    cycles, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, []):
            if m not in graph:
                continue
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n)
    return cycles


def closure(graph, roots):
    seen, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(graph.get(n, []))
    return seen


def compiler_opened(cxx, include_dir, headers):
    source = "".join(f"#include <{h}>\n" for h in headers)
    proc = subprocess.run([cxx, "-std=c++20", "-H", "-fsyntax-only", f"-I{include_dir}", "-x", "c++", "-"],
                          input=source, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cxx} failed on {headers}:\n{proc.stderr[-2000:]}")
    opened = []
    for line in proc.stderr.splitlines():
        m = re.match(r"^\.+\s+(\S.*)$", line)
        if m:
            opened.append(m.group(1))
    return opened


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--include", required=True, help="the include/ directory")
    ap.add_argument("--cxx", help="a compiler for the -H check")
    args = ap.parse_args()
    root = Path(args.include)
    graph = load_graph(root)
    errors = []

    for cycle in find_cycles(graph):
        errors.append("include cycle: " + " -> ".join(cycle))

    for header, includes in graph.items():
        layer = layer_of(header)
        for inc in includes:
            if inc == "offload/offload.hpp":
                errors.append(f"{header} includes the umbrella offload.hpp (only users include it)")
            if inc not in graph:
                errors.append(f"{header} includes {inc}, which does not exist")
                continue
            if layer is None:
                continue
            if layer not in DETAIL_DEPS:
                errors.append(f"{header}: detail/{layer}/ is not a known layer (add it to check_layers.py)")
                continue
            inc_layer = layer_of(inc)
            if inc_layer is not None and inc_layer not in DETAIL_DEPS[layer]:
                errors.append(f"{header} (layer {layer}) includes {inc} (layer {inc_layer}): layers include "
                              f"downward only ({layer} may use {sorted(DETAIL_DEPS[layer])})")
            if inc_layer is None and inc.split("/", 1)[1] not in PUBLIC_BASE[layer]:
                errors.append(f"{header} (layer {layer}) includes the public {inc}; detail/{layer}/ may include "
                              f"only {sorted(PUBLIC_BASE[layer]) or 'no public header'}")

    for roots, patterns in FORBIDDEN_CLOSURES:
        reached = closure(graph, roots)
        for h in sorted(reached):
            for p in patterns:
                if re.search(p, h):
                    errors.append(f"{' + '.join(roots)} pulls in {h}")

    if args.cxx:
        for roots, patterns in FORBIDDEN_SYSTEM:
            try:
                opened = compiler_opened(args.cxx, root, roots)
            except RuntimeError as e:
                errors.append(str(e))
                continue
            for path in opened:
                for p in patterns:
                    if re.search(p, path):
                        errors.append(f"compiling {' + '.join(roots)} opens {path}")
            print(f"{' + '.join(roots)}: the compiler opens {len(opened)} headers")

    print(f"{len(graph)} headers, {sum(len(v) for v in graph.values())} offload includes checked")
    for e in errors:
        print("error:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
