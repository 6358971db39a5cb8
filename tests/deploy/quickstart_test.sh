#!/usr/bin/env bash
# The README's two commands in either order: a build dir configured by
# `quickstart.sh demo` (no tests, no benchmarks) and then by `quickstart.sh
# test`'s options must register the whole suite, not silently none of it.
# Configures (does not build) a throwaway build dir with exactly the options
# each command passes (quickstart.sh cmake-args), in the order a new user runs
# them, and counts the tests CTest sees.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mapfile -t demo < <("$SRC/deploy/quickstart.sh" cmake-args demo)
mapfile -t test < <("$SRC/deploy/quickstart.sh" cmake-args test)
cmake -S "$SRC" -B "$TMP/build" -G Ninja "${demo[@]}" >"$TMP/demo.log" 2>&1 ||
  { cat "$TMP/demo.log"; exit 1; }
n_demo=$(ctest --test-dir "$TMP/build" -N 2>/dev/null | sed -nE 's/^Total Tests: ([0-9]+)/\1/p')
echo "after the demo's configure: ${n_demo:-0} tests"
cmake -S "$SRC" -B "$TMP/build" -G Ninja "${test[@]}" >"$TMP/test.log" 2>&1 ||
  { cat "$TMP/test.log"; exit 1; }
n_test=$(ctest --test-dir "$TMP/build" -N | sed -nE 's/^Total Tests: ([0-9]+)/\1/p')
echo "after the test command's configure in the same dir: $n_test tests"
# The whole suite: every test-building option on in the cache, the GoogleTest
# executables (discovered at build time) in the build graph, and the script
# tests of each label registered.
for opt in SALVO_BUILD_TESTS SALVO_BUILD_BENCH SALVO_INTEGRATION_TESTS; do
  v=$(sed -nE "s/^$opt:BOOL=(.*)/\1/p" "$TMP/build/CMakeCache.txt")
  echo "  $opt=$v"
  [ "$v" = ON ] || { echo "FAIL: $opt is '$v' after demo then test"; exit 1; }
done
n_exe=$(ninja -C "$TMP/build" -t targets all | grep -cE '^tests/[a-z]+/[a-z0-9_]+_test:' || true)
echo "  test executables in the build graph: $n_exe"
[ "$n_exe" -ge 20 ] || { echo "FAIL: only $n_exe test executables would be built"; exit 1; }
for label in integration lint bench-smoke; do
  n=$(ctest --test-dir "$TMP/build" -N -L "^$label\$" | sed -nE 's/^Total Tests: ([0-9]+)/\1/p')
  echo "  label $label: $n"
  [ "${n:-0}" -gt 0 ] || { echo "FAIL: no $label tests registered after demo then test"; exit 1; }
done
# And the test command refuses to pass on an empty suite.
grep -q -- '--no-tests=error' "$SRC/deploy/quickstart.sh" ||
  { echo "FAIL: quickstart.sh test does not run ctest with --no-tests=error"; exit 1; }
echo "ok"
