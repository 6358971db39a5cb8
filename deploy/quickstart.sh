#!/usr/bin/env bash
# The two commands of the README's quick start. Each does the whole set-up on
# a fresh Debian 12 machine (packages, build) before its job:
#   ./deploy/quickstart.sh demo   build, then send a demo campaign to the built-in sink
#   ./deploy/quickstart.sh test   build, then run the whole test suite (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${SALVO_JOBS:-$(nproc)}

log() { printf '\n== %s\n' "$*"; }

build() {  # build DIR [cmake args...]
  local dir=$1; shift
  cmake -S "$ROOT" -B "$dir" -G Ninja "$@" >/dev/null
  ninja -C "$dir" -j "$JOBS"
}

case "${1:-}" in
  demo)
    log "installing Debian packages (deploy/bootstrap.sh)"
    ./deploy/bootstrap.sh all
    log "building (build/)"
    build build -DCMAKE_BUILD_TYPE=Release -DSALVO_BUILD_TESTS=OFF -DSALVO_BUILD_BENCH=OFF
    log "sending the demo campaign to the built-in sink"
    exec ./deploy/demo/run-demo.sh "$ROOT/build/bin/salvo"
    ;;
  test)
    log "installing Debian packages (deploy/bootstrap.sh)"
    ./deploy/bootstrap.sh all
    log "building with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
    build build-asan -DCMAKE_BUILD_TYPE=Debug -DSALVO_SANITIZE=ON -DSALVO_BUILD_BENCH=OFF -DSALVO_INTEGRATION_TESTS=OFF -DSALVO_WERROR=ON
    log "unit tests under ASan+UBSan"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir build-asan -L unit --output-on-failure -j "$JOBS" --timeout 300
    if [ -x tests/fuzz/run.sh ]; then
      log "fuzzing (libFuzzer, clang, ASan+UBSan), bounded time"
      tests/fuzz/run.sh "${SALVO_FUZZ_SECONDS:-30}"
    fi
    log "building (build/)"
    build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSALVO_WERROR=ON
    log "the whole suite: unit, integration, lint, benchmark smoke runs"
    ctest --test-dir build --output-on-failure -j "$JOBS" --timeout 600
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
