#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (ASan + UBSan) in their own build
# dir and runs each for SECONDS (default 60). Exits non-zero on any crash,
# leak, sanitizer report or timeout. The checked-in corpus (tests/fuzz/corpus/)
# seeds the run and is never modified; new inputs go to a scratch dir.
#   tests/fuzz/run.sh 60
set -euo pipefail
SECONDS_PER_TARGET="${1:-60}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${SALVO_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
TARGETS=(reply_parser session dns_message csv template config sink_session inbound_session admin_request bounce_report)

if ! command -v clang++-14 >/dev/null; then
  echo "run.sh: clang++-14 not found (apt-get install clang-14)" >&2
  exit 2
fi
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSALVO_FUZZ=ON -DSALVO_BUILD_TESTS=OFF \
  -DSALVO_BUILD_BENCH=OFF >"$BUILD/cmake.log" 2>&1 || { cat "$BUILD/cmake.log" >&2; exit 1; }
ninja -C "$BUILD" -j2 "${TARGETS[@]/%/_fuzz}"

mkdir -p "$BUILD/artifacts"
status=0
for t in "${TARGETS[@]}"; do
  scratch="$(mktemp -d)"
  echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
  if ! UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      "$BUILD/tests/fuzz/${t}_fuzz" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" \
      "$scratch" "$ROOT/tests/fuzz/corpus/$t" 2>"$BUILD/$t.log"; then
    echo "run.sh: $t crashed; see $BUILD/$t.log and $BUILD/artifacts/" >&2
    tail -40 "$BUILD/$t.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_runs|cov:" "$BUILD/$t.log" | tail -2
  fi
  rm -rf "$scratch"
done
exit $status
