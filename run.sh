#!/usr/bin/env bash
# offload's one entry point.
#   bash run.sh demo   build the release preset, run the examples and benchmarks
#   bash run.sh test   check the formatting (clang-format-16) and the API
#                      reference (scripts/api_docs.sh: Doxygen, no warnings),
#                      then build and test the presets dev, debug (g++ -O0),
#                      asan-ubsan and tsan
#                      (override: OFFLOAD_PRESETS="dev tsan" bash run.sh test)
# Installs missing Debian packages first (apt-get, only when something is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

DEMO_PACKAGES=(g++ cmake ninja-build libfmt-dev libasio-dev python3 wrk libopenmpi-dev openmpi-bin python3-mpi4py)
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

demo() {
  ensure_packages "${DEMO_PACKAGES[@]}"
  cmake --preset release
  cmake --build --preset release
  local exe ran=0
  for exe in build/release/examples/example_*; do
    [[ -f "$exe" && -x "$exe" ]] || continue
    [[ "$exe" == */example_http_service ]] && continue # serves until stopped: run by bench_service_driver.py below
    echo
    echo "==> $exe"
    "$exe"
    ran=1
  done
  if [[ -d build/release/benchmarks ]]; then
    while IFS= read -r exe; do
      echo
      echo "==> $exe"
      "$exe"
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
    echo
    echo "==> $exe --hogs $hogs"
    "$exe" --hogs "$hogs" --json "${exe_name}_hogs.json"
  done
  # The HTTP service example under wrk beside its asyncio peer (issue 11):
  # idle, then with 2 busy-loop processes beside it.
  local service
  for service in build/release/examples/http_service build/release/examples/example_http_service; do
    [[ -x "$service" ]] || continue
    echo
    echo "==> benchmarks/bench_service_driver.py --cpp $service"
    /usr/bin/python3 benchmarks/bench_service_driver.py --cpp "$service" --repeats 2 --json bench_service.json
    echo
    echo "==> benchmarks/bench_service_driver.py --cpp $service --hogs 2"
    /usr/bin/python3 benchmarks/bench_service_driver.py --cpp "$service" --repeats 2 --hogs 2 \
      --json bench_service_hogs.json
    break
  done
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
