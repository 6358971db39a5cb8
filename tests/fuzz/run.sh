#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (ASan + UBSan) in their own build
# dir and runs each for SECONDS (default 60). Exits non-zero on any crash,
# leak, sanitizer report or timeout. The checked-in corpus (tests/fuzz/corpus/)
# seeds the run and is never modified; new inputs go to a scratch dir.
#   tests/fuzz/run.sh 60
# SALVO_FUZZ_RUNS=N runs each target for N executions instead (the long local
# run: SALVO_FUZZ_RUNS=1000000 tests/fuzz/run.sh 7200, SECONDS then bounds each
# target's time); SALVO_FUZZ_TARGETS="csv config" runs only those targets;
# SALVO_FUZZ_JOBS=N runs N targets at once (default: the number of cores).
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
  -DSALVO_BUILD_BENCH=OFF -DSALVO_DEBUG_LINES_ONLY=ON >"$BUILD/cmake.log" 2>&1 || { cat "$BUILD/cmake.log" >&2; exit 1; }
ninja -C "$BUILD" -j2 "${TARGETS[@]/%/_fuzz}"

mkdir -p "$BUILD/artifacts"
# One target at a time per core (SALVO_FUZZ_JOBS, default nproc): each still
# gets its SECONDS on a core of its own, the wall time divides by the cores.
JOBS="${SALVO_FUZZ_JOBS:-$(nproc)}"
fuzz_one() {  # fuzz_one TARGET: runs it, prints its summary, returns non-zero on a finding
  local t=$1 scratch rc=0
  scratch="$(mktemp -d)"
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$BUILD/tests/fuzz/${t}_fuzz" -max_total_time="$SECONDS_PER_TARGET" -runs="$RUNS" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" \
    "$scratch" "$ROOT/tests/fuzz/corpus/$t" 2>"$BUILD/$t.log" || rc=$?
  rm -rf "$scratch"
  if [ "$rc" -ne 0 ]; then
    { echo "run.sh: $t crashed; see $BUILD/$t.log and $BUILD/artifacts/"; tail -40 "$BUILD/$t.log"; } >&2
    return 1
  fi
  { echo "== $t"; grep -E "stat::number_of_executed_runs|stat::average_exec_per_sec|cov:" "$BUILD/$t.log" | tail -3 || true; }
}
if [ "$RUNS" -gt 0 ]; then
  echo "== fuzzing ${TARGETS[*]} for $RUNS runs each (at most ${SECONDS_PER_TARGET}s), $JOBS at a time"
else
  echo "== fuzzing ${TARGETS[*]} for ${SECONDS_PER_TARGET}s each, $JOBS at a time"
fi
status=0
pids=()
for t in "${TARGETS[@]}"; do
  while [ "${#pids[@]}" -ge "$JOBS" ]; do  # wait for the oldest before starting another
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  done
  fuzz_one "$t" &
  pids+=($!)
done
for p in "${pids[@]}"; do
  wait "$p" || status=1
done
exit $status
