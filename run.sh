#!/usr/bin/env bash
# offload's one entry point.
#   bash run.sh demo   build the examples and benchmarks (release preset, no
#                      tests), run them, and write the report: plots and
#                      tables in build/report/index.md (JSON in
#                      build/report/json, each program's output in
#                      build/report/logs) and the generated section of
#                      benchmarks/RESULTS.md (scripts/report.py)
#   bash run.sh test   check the formatting (clang-format-16) and the API
#                      reference (scripts/api_docs.sh: Doxygen, no warnings),
#                      then build and test the presets dev, debug (g++ -O0),
#                      asan-ubsan and tsan
#                      (override: OFFLOAD_PRESETS="dev tsan" bash run.sh test)
# Installs missing Debian packages first (apt-get, only when something is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

DEMO_PACKAGES=(g++ cmake ninja-build libfmt-dev libasio-dev python3 wrk libopenmpi-dev openmpi-bin python3-mpi4py
  gnuplot-nox)
TEST_PACKAGES=("${DEMO_PACKAGES[@]}" clang-16 catch2 libclang-rt-16-dev clang-format-16 doxygen)

usage() {
  echo "usage: bash run.sh demo|test" >&2
  exit 2
}

# Installs the packages that dpkg does not report as installed.
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  echo "==> installing missing packages: ${missing[*]}"
  local sudo=()
  if ((EUID != 0)); then
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}

# clang-16's sanitizers (TSan: "FATAL: ThreadSanitizer: unexpected memory
# mapping"; ASan: random SEGVs) break when the kernel uses more than 28 bits of
# mmap randomization (vm.mmap_rnd_bits = 32 on recent kernels). Lower it for
# the run if we may (restored on exit), otherwise run tests with ASLR off.
SANITIZER_WRAP=()
ORIGINAL_MMAP_RND_BITS=""
restore_mmap_rnd_bits() {
  if [[ -n "$ORIGINAL_MMAP_RND_BITS" ]]; then
    sysctl -q -w "vm.mmap_rnd_bits=$ORIGINAL_MMAP_RND_BITS" >/dev/null 2>&1 || true
  fi
}
prepare_sanitizer_aslr() {
  local bits
  bits=$(sysctl -n vm.mmap_rnd_bits 2>/dev/null || echo 0)
  if ((bits <= 28)); then
    return 0
  fi
  if sysctl -q -w vm.mmap_rnd_bits=28 >/dev/null 2>&1 &&
     (($(sysctl -n vm.mmap_rnd_bits) <= 28)); then
    if [[ -z "$ORIGINAL_MMAP_RND_BITS" ]]; then
      ORIGINAL_MMAP_RND_BITS=$bits
      trap restore_mmap_rnd_bits EXIT
    fi
    echo "==> vm.mmap_rnd_bits lowered from $bits to 28 for the sanitizer run (restored on exit)"
  else
    SANITIZER_WRAP=(setarch "$(uname -m)" -R)
    echo "==> vm.mmap_rnd_bits is $bits and cannot be lowered: running tests with ASLR off (setarch -R)"
  fi
}

# Runs one program of the demo: its output to the terminal and to
# build/report/logs/NAME.log; a failure is reported at the end, not fatal
# (the report says what was not measured).
DEMO_FAILED=()
demo_run() {
  local name=$1
  shift
  echo
  echo "==> $*"
  # stdin from /dev/null: mpirun (bench_mpi) would read the caller's stdin,
  # the list of benchmarks still to run
  if ! "$@" </dev/null 2>&1 | tee "$REPORT_DIR/logs/$name.log"; then
    echo "==> $name FAILED (exit status ${PIPESTATUS[0]}; log: $REPORT_DIR/logs/$name.log)"
    DEMO_FAILED+=("$name")
  fi
}

demo() {
  ensure_packages "${DEMO_PACKAGES[@]}"
  local started=$EPOCHSECONDS load_start
  load_start=$(cut -d' ' -f1-3 /proc/loadavg)
  # Examples and benchmarks only: the tests (and the examples built again
  # against the library compiled once) are for `bash run.sh test`.
  cmake --preset release -DOFFLOAD_BUILD_TESTS=OFF -DOFFLOAD_BUILD_SEPARATE=OFF
  cmake --build --preset release
  REPORT_DIR=build/report
  local json=$REPORT_DIR/json
  rm -rf "$REPORT_DIR"
  mkdir -p "$json" "$REPORT_DIR/logs"
  printf '{"started_epoch": %d, "build_s": %d, "loadavg_start": "%s", "compiler": "%s", "build_type": "Release"}\n' \
    "$started" $((EPOCHSECONDS - started)) "$load_start" "$(g++ --version | head -n 1)" >"$json/run.json"
  local exe name ran=0
  for exe in build/release/examples/example_*; do
    [[ -f "$exe" && -x "$exe" ]] || continue
    [[ "$exe" == */example_http_service ]] && continue # serves until stopped: run by bench_service_driver.py below
    demo_run "$(basename "$exe")" "$exe"
    ran=1
  done
  if [[ -d build/release/benchmarks ]]; then
    while IFS= read -r exe; do
      name=$(basename "$exe")
      # Programs built on bench_common.hpp's parse_options take --json PATH.
      if grep -qE 'parse_options|"--json"' "benchmarks/$name.cpp" 2>/dev/null; then
        demo_run "$name" "$exe" --json "$json/$name.json"
      else
        demo_run "$name" "$exe"
      fi
      ran=1
    done < <(find build/release/benchmarks -maxdepth 1 -type f -perm -u+x | sort)
  fi
  if ((ran == 0)); then
    echo "(no examples or benchmarks built yet)"
  fi
  # The same hand-offs on a busy machine: as many busy-loop processes as CPUs
  # run beside each program and its Python peer (--hogs; smaller sizes).
  local hogs exe_name
  hogs=$(nproc)
  for exe_name in bench_offload bench_process; do
    exe=build/release/benchmarks/$exe_name
    [[ -x "$exe" ]] || continue
    demo_run "${exe_name}_hogs" "$exe" --hogs "$hogs" --json "$json/${exe_name}_hogs.json"
  done
  # The HTTP service example under wrk beside its asyncio peer (issue 11):
  # idle, then with 2 busy-loop processes beside it.
  local service
  for service in build/release/examples/http_service build/release/examples/example_http_service; do
    [[ -x "$service" ]] || continue
    demo_run bench_service /usr/bin/python3 benchmarks/bench_service_driver.py --cpp "$service" --repeats 2 \
      --json "$json/bench_service.json"
    demo_run bench_service_hogs /usr/bin/python3 benchmarks/bench_service_driver.py --cpp "$service" --repeats 2 \
      --hogs 2 --json "$json/bench_service_hogs.json"
    break
  done
  # The report: plots (gnuplot SVG) and tables in build/report/index.md, and
  # the generated section of benchmarks/RESULTS.md, from this run's JSON.
  echo
  echo "==> scripts/report.py $json $REPORT_DIR --results benchmarks/RESULTS.md"
  /usr/bin/python3 scripts/report.py "$json" "$REPORT_DIR" --results benchmarks/RESULTS.md
  echo "==> report: $REPORT_DIR/index.md (logs: $REPORT_DIR/logs/); the demo took $(((EPOCHSECONDS - started) / 60)) min"
  if ((${#DEMO_FAILED[@]} > 0)); then
    echo "==> failed: ${DEMO_FAILED[*]}"
    return 1
  fi
}

test_all() {
  ensure_packages "${TEST_PACKAGES[@]}"
  local presets preset log line failed_count total
  read -r -a presets <<<"${OFFLOAD_PRESETS:-dev debug asan-ubsan tsan}"
  local passed=0 failed=0 failed_presets=()
  mkdir -p build
  echo "==> formatting (clang-format-16, .clang-format)"
  if bash scripts/check_format.sh; then
    passed=$((passed + 1))
  else
    echo "==> unformatted code: run bash scripts/check_format.sh --fix"
    failed=$((failed + 1))
    failed_presets+=("format")
  fi
  echo "==> API reference (Doxygen, docs/Doxyfile): every public name documented, no warnings"
  if bash scripts/api_docs.sh build/api; then
    passed=$((passed + 1))
  else
    echo "==> API reference has warnings: document the names above (///), see scripts/api_docs.sh"
    failed=$((failed + 1))
    failed_presets+=("api-docs")
  fi
  for preset in "${presets[@]}"; do
    echo
    echo "=================================================================="
    echo "==> preset: $preset"
    echo "=================================================================="
    if ! cmake --preset "$preset" || ! cmake --build --preset "$preset"; then
      echo "==> preset $preset: configure/build FAILED"
      failed=$((failed + 1))
      failed_presets+=("$preset (build)")
      continue
    fi
    local wrap=()
    if [[ "$preset" == *san* ]]; then
      SANITIZER_WRAP=()
      prepare_sanitizer_aslr
      wrap=("${SANITIZER_WRAP[@]}")
    fi
    log="build/ctest-$preset.log"
    local rc=0
    "${wrap[@]}" ctest --preset "$preset" 2>&1 | tee "$log" || rc=$?
    line=$(grep -E '[0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
    if [[ "$line" =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
      failed_count=${BASH_REMATCH[1]}
      total=${BASH_REMATCH[2]}
      passed=$((passed + total - failed_count))
      failed=$((failed + failed_count))
      if ((failed_count > 0)); then
        failed_presets+=("$preset")
      elif ((rc != 0)); then
        failed=$((failed + 1))
        failed_presets+=("$preset (ctest exit $rc)")
      fi
    elif grep -q 'No tests were found' "$log" && ((rc == 0)); then
      echo "==> preset $preset: no tests"
    else
      echo "==> preset $preset: ctest did not report a summary (exit $rc)"
      failed=$((failed + 1))
      failed_presets+=("$preset (ctest exit $rc)")
    fi
  done
  echo
  if ((${#failed_presets[@]} > 0)); then
    echo "failing presets: ${failed_presets[*]}"
  fi
  echo "$passed passed, $failed failed"
  ((failed == 0))
}

case "${1:-}" in
  demo) demo ;;
  test) test_all ;;
  *) usage ;;
esac
