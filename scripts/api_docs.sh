#!/usr/bin/env bash
# scripts/api_docs.sh [outdir] — builds the API reference of the public
# headers (include/offload/*.hpp; not detail/) with Doxygen (docs/Doxyfile)
# into outdir/html (default build/api/html). Exits non-zero on any Doxygen
# warning, among them a public name without a `///` comment, and prints the
# warnings (also kept in outdir/warnings.log). bash run.sh test runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=${1:-build/api}
if ! command -v doxygen >/dev/null 2>&1; then
  echo "api_docs: doxygen not found (Debian: apt-get install doxygen)" >&2
  exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/warnings.log"
rm -rf "$out/html"

# The Doxyfile with the output folder and the warning log overridden (a later
# assignment of a tag wins).
rc=0
{
  cat docs/Doxyfile
  echo "OUTPUT_DIRECTORY = \"$out\""
  echo "WARN_LOGFILE = \"$log\""
} | doxygen - >"$out/doxygen.out" 2>&1 || rc=$?

# FAIL_ON_WARNINGS makes doxygen exit non-zero on a warning; an empty log is
# checked too, so a warning never passes unnoticed.
if ((rc != 0)) || [[ -s "$log" ]]; then
  [[ -s "$log" ]] && cat "$log" >&2
  ((rc != 0)) && tail -n 20 "$out/doxygen.out" >&2
  count=$(grep -c . "$log" 2>/dev/null || true)
  echo "api_docs: FAILED (doxygen exit $rc, ${count:-0} warning lines in $log)" >&2
  exit 1
fi
echo "api_docs: $out/html/index.html (no warnings)"
