#!/usr/bin/env bash
# check_format.sh — checks the C++ sources against .clang-format.
#   bash scripts/check_format.sh         list the files clang-format would change; exit 1 if any
#   bash scripts/check_format.sh --fix   format them in place
# Covers every tracked *.hpp / *.cpp under include/ tests/ examples/ benchmarks/ src/.
# The formatter is clang-format-16 (override: CLANG_FORMAT=/path/to/clang-format).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
  echo "usage: bash scripts/check_format.sh [--fix]" >&2
  exit 2
}

fix=0
case "${1:-}" in
  "") ;;
  --fix) fix=1 ;;
  *) usage ;;
esac
(($# <= 1)) || usage

clang_format=${CLANG_FORMAT:-clang-format-16}
if ! command -v "$clang_format" >/dev/null; then
  echo "check_format.sh: $clang_format not found (apt-get install clang-format-16, or set CLANG_FORMAT)" >&2
  exit 2
fi

# A broken .clang-format would otherwise show up as "every file unformatted".
"$clang_format" --style=file --dump-config include/offload/task.hpp >/dev/null

files=()
while IFS= read -r -d '' f; do
  [[ -f "$f" ]] && files+=("$f") # skip tracked files deleted in the work tree
done < <(git ls-files -z -- 'include/*.hpp' 'include/*.cpp' 'tests/*.hpp' 'tests/*.cpp' \
  'examples/*.hpp' 'examples/*.cpp' 'benchmarks/*.hpp' 'benchmarks/*.cpp' 'src/*.cpp')

if ((fix)); then
  "$clang_format" -i --style=file "${files[@]}"
  echo "formatted ${#files[@]} files"
  exit 0
fi

bad=()
for f in "${files[@]}"; do
  "$clang_format" --dry-run --Werror --style=file "$f" >/dev/null 2>&1 || bad+=("$f")
done

if ((${#bad[@]} > 0)); then
  echo "${#bad[@]} of ${#files[@]} files are not formatted:"
  printf '  %s\n' "${bad[@]}"
  echo "fix with: bash scripts/check_format.sh --fix"
  exit 1
fi
echo "all ${#files[@]} files are formatted"
