#!/usr/bin/env bash
# Fails if clang-format (with the checked-in .clang-format) would change any
# tracked C++ file. Run from anywhere; checks the git tree it lives in.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files -- '*.cc' '*.h' '*.hpp' '*.cpp')
if [ ${#files[@]} -eq 0 ]; then echo "format: no C++ files"; exit 1; fi
if ! out=$(clang-format --dry-run --Werror "${files[@]}" 2>&1); then
  echo "$out" | grep -E '^[^ ].*(warning|error):' | head -20
  echo "format: clang-format would change files above; run: clang-format -i \$(git ls-files '*.cc' '*.h')"
  exit 1
fi
echo "format: ${#files[@]} files clean"
