#!/usr/bin/env bash
# compile_time.sh — what including offload costs: the wall time of compiling a
# tiny translation unit per public entry point, beside standalone asio as the
# peer, with the ratio and its target. Header-only means users pay this in
# every TU, so it is measured like any other cost.
#   bash benchmarks/compile_time.sh [--runs N] [--json FILE]
#   CXX=clang++-16 bash benchmarks/compile_time.sh
# Each TU is compiled with "$CXX -std=c++20 -O2 -c -I<repo>/include", N times
# in interleaved rounds (noise hits every TU alike); the median is reported.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

usage() {
  echo "usage: bash benchmarks/compile_time.sh [--runs N] [--json FILE]   (compiler: \$CXX, default g++)" >&2
  exit 2
}

runs=5
json=""
while (($# > 0)); do
  case "$1" in
    --runs)
      [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || usage
      runs=$2
      shift 2
      ;;
    --json)
      [[ $# -ge 2 && -n "$2" ]] || usage
      json=$2
      shift 2
      ;;
    -h | --help) usage ;;
    *) usage ;;
  esac
done

read -r -a cxx <<<"${CXX:-g++}"
flags=(-std=c++20 -O2 -c "-I$repo/include")

# "g++ 12.2.0" / "clang++ 16.0.6": the family from the predefined macros, the
# version from the compiler itself.
if "${cxx[@]}" -dM -E -x c++ /dev/null 2>/dev/null | grep -q '__clang__'; then
  compiler="clang++ $("${cxx[@]}" -dumpversion)"
else
  compiler="g++ $("${cxx[@]}" -dumpfullversion 2>/dev/null || "${cxx[@]}" -dumpversion)"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- the translation units ------------------------------------------------------
# Each includes only the header(s) it names and uses them in a non-template
# function, so what it includes is actually instantiated. to_thread also names
# task.hpp: a co_await needs a coroutine type, and a real user includes it.
# The *_sep rows compile the same TU with OFFLOAD_SEPARATE_COMPILATION (link
# offload::separate): the library's non-template functions are then compiled
# once in that library instead of in every TU. asio_sep is asio's own mode for
# the same (ASIO_SEPARATE_COMPILATION). Ratios are against header-only asio.hpp.
names=(task_run to_thread umbrella asio task_run_sep to_thread_sep umbrella_sep asio_sep)
declare -A target=([task_run]=0.6 [to_thread]=0.8 [umbrella]=1.0 [task_run_sep]=0.6 [to_thread_sep]=0.8
                   [umbrella_sep]=1.0)
declare -A source=([task_run_sep]=task_run [to_thread_sep]=to_thread [umbrella_sep]=umbrella [asio_sep]=asio)
declare -A extra=([task_run_sep]=-DOFFLOAD_SEPARATE_COMPILATION [to_thread_sep]=-DOFFLOAD_SEPARATE_COMPILATION
                  [umbrella_sep]=-DOFFLOAD_SEPARATE_COMPILATION [asio_sep]=-DASIO_SEPARATE_COMPILATION)

cat >"$work/task_run.cpp" <<'EOF'
#include <offload/task.hpp>
#include <offload/run.hpp>

offload::task<int> answer() { co_return 42; }
offload::task<int> amain() { co_return co_await answer() - 42; }
int main() { return offload::run(amain()); }
EOF

cat >"$work/to_thread.cpp" <<'EOF'
#include <offload/to_thread.hpp>
#include <offload/task.hpp>

offload::task<int> f() { co_return co_await offload::to_thread([] { return 1; }); }
EOF

cat >"$work/umbrella.cpp" <<'EOF'
#include <offload/offload.hpp>

int twice(int x) { return 2 * x; }
offload::task<int> amain(offload::process_pool& pool) {
    int a = co_await offload::to_thread([] { return 1; });
    int b = co_await offload::run_in_executor(pool, twice, a);
    co_return b - 2 * a;
}
int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    offload::process_pool pool({.workers = 1});
    return offload::run(amain(pool));
}
EOF

cat >"$work/asio.cpp" <<'EOF'
#include <asio.hpp>

int main() {
    asio::io_context io;
    asio::thread_pool pool(1);
    int result = 1;
    asio::post(pool, [&] { asio::post(io, [&] { result = 0; }); });
    pool.join();
    io.run();
    return result;
}
EOF

compile() {
  local src=${source[$1]:-$1} more=()
  [[ -z ${extra[$1]:-} ]] || more=("${extra[$1]}")
  "${cxx[@]}" "${flags[@]}" "${more[@]}" "$work/$src.cpp" -o "$work/$1.o"
}

# One untimed compile each: checks the TUs build and warms the file cache.
for name in "${names[@]}"; do
  if ! compile "$name"; then
    echo "compile_time.sh: $name.cpp does not compile with ${cxx[*]} (see above)" >&2
    exit 1
  fi
done

# --- measure: round r compiles every TU once ----------------------------------------
declare -A samples
for ((r = 1; r <= runs; r++)); do
  for name in "${names[@]}"; do
    start=$(date +%s%N)
    compile "$name"
    end=$(date +%s%N)
    samples[$name]+="$(awk -v ns=$((end - start)) 'BEGIN { printf "%.3f", ns / 1e9 }') "
  done
  echo "round $r/$runs done" >&2
done

median() {
  tr ' ' '\n' <<<"$1" | grep . | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A med
for name in "${names[@]}"; do
  med[$name]=$(median "${samples[$name]}")
done

# --- report ---------------------------------------------------------------------------
echo
echo "compile time: $compiler ${flags[*]:0:3}, median of $runs (interleaved)"
printf '%-14s %10s %8s %8s  %s\n' "TU" "median s" "x asio" "target" "status"
rows=()
for name in "${names[@]}"; do
  ratio=$(awk -v a="${med[$name]}" -v b="${med[asio]}" 'BEGIN { printf "%.2f", a / b }')
  samples_json="[$(sed -e 's/ *$//' -e 's/ /, /g' <<<"${samples[$name]}")]"
  if [[ $name == asio* ]]; then
    printf '%-14s %10.3f %8s %8s  %s\n' "$name" "${med[$name]}" "$ratio" "-" "(peer)"
    rows+=("{\"name\": \"$name\", \"median_s\": ${med[$name]}, \"ratio\": $ratio, \"target\": null, \"met\": null, \"samples_s\": $samples_json}")
  else
    t=${target[$name]}
    met=$(awk -v r="$ratio" -v t="$t" 'BEGIN { print (r <= t) ? "true" : "false" }')
    status="met"
    [[ $met == true ]] || status="NOT met"
    printf '%-14s %10.3f %8s %8s  %s\n' "$name" "${med[$name]}" "$ratio" "<= $t" "$status"
    rows+=("{\"name\": \"$name\", \"median_s\": ${med[$name]}, \"ratio\": $ratio, \"target\": $t, \"met\": $met, \"samples_s\": $samples_json}")
  fi
done

if [[ -n $json ]]; then
  {
    printf '{"compiler": "%s", "flags": "%s", "runs": %d, "rows": [\n' "$compiler" "${flags[*]:0:3}" "$runs"
    for i in "${!rows[@]}"; do
      sep=","
      ((i + 1 < ${#rows[@]})) || sep=""
      printf '  %s%s\n' "${rows[$i]}" "$sep"
    done
    printf ']}\n'
  } >"$json"
  echo "wrote $json"
fi
