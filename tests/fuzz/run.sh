#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (ASan + UBSan) in their own build
# dir and runs each for SECONDS (default 60). Exits non-zero on any crash,
# leak, sanitizer report or timeout. The checked-in corpus (tests/fuzz/corpus/)
# seeds the run and is never modified; new inputs go to a scratch dir.
#   tests/fuzz/run.sh 60
# SALVO_FUZZ_RUNS=N runs each target for N executions instead (the long local
# run: SALVO_FUZZ_RUNS=1000000 tests/fuzz/run.sh 7200, SECONDS then bounds each
# target's time); SALVO_FUZZ_TARGETS="csv config" runs only those targets.
set -euo pipefail
SECONDS_PER_TARGET="${1:-60}"
RUNS="${SALVO_FUZZ_RUNS:--1}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${SALVO_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
TARGETS=(reply_parser session dns_message csv template config sink_session inbound_session admin_request bounce_report)
if [ -n "${SALVO_FUZZ_TARGETS:-}" ]; then
  read -r -a TARGETS <<<"$SALVO_FUZZ_TARGETS"
fi

if ! command -v clang++-14 >/dev/null; then
  echo "run.sh: clang++-14 not found (apt-get install clang-14)" >&2
  exit 2
fi
mkdir -p "$BUILD"
LAUNCHER=()
if command -v ccache >/dev/null; then
  LAUNCHER=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$ROOT" -B "$BUILD" -G Ninja "${LAUNCHER[@]}" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSALVO_FUZZ=ON -DSALVO_BUILD_TESTS=OFF \
  -DSALVO_BUILD_BENCH=OFF >"$BUILD/cmake.log" 2>&1 || { cat "$BUILD/cmake.log" >&2; exit 1; }
ninja -C "$BUILD" -j2 "${TARGETS[@]/%/_fuzz}"

mkdir -p "$BUILD/artifacts"
status=0
for t in "${TARGETS[@]}"; do
  scratch="$(mktemp -d)"
  if [ "$RUNS" -gt 0 ]; then
    echo "== fuzzing $t for $RUNS runs (at most ${SECONDS_PER_TARGET}s)"
  else
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
  fi
  if ! UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      "$BUILD/tests/fuzz/${t}_fuzz" -max_total_time="$SECONDS_PER_TARGET" -runs="$RUNS" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" \
      "$scratch" "$ROOT/tests/fuzz/corpus/$t" 2>"$BUILD/$t.log"; then
    echo "run.sh: $t crashed; see $BUILD/$t.log and $BUILD/artifacts/" >&2
    tail -40 "$BUILD/$t.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_runs|stat::average_exec_per_sec|cov:" "$BUILD/$t.log" | tail -3
  fi
  rm -rf "$scratch"
done
exit $status
