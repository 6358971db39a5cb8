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

# Every cache option each command relies on is passed explicitly: both commands
# share build/, and a cache left by the other one (demo: no tests) must never
# decide what this one builds ("No tests were found" passing silently).
DEMO_ARGS=(-DCMAKE_BUILD_TYPE=Release -DSALVO_BUILD_TESTS=OFF -DSALVO_BUILD_BENCH=OFF
           -DSALVO_SANITIZE=OFF -DSALVO_FUZZ=OFF -DSALVO_DEBUG_LINES_ONLY=OFF)
# The two test builds keep line tables only (-g1): file:line in every
# backtrace and sanitizer report, 5-30% less compile CPU a file (CI's budget).
ASAN_ARGS=(-DCMAKE_BUILD_TYPE=Debug -DSALVO_SANITIZE=ON -DSALVO_BUILD_TESTS=ON
           -DSALVO_BUILD_BENCH=OFF -DSALVO_INTEGRATION_TESTS=OFF -DSALVO_WERROR=ON -DSALVO_FUZZ=OFF
           -DSALVO_DEBUG_LINES_ONLY=ON)
TEST_ARGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSALVO_BUILD_TESTS=ON -DSALVO_BUILD_BENCH=ON
           -DSALVO_INTEGRATION_TESTS=ON -DSALVO_SANITIZE=OFF -DSALVO_WERROR=ON -DSALVO_FUZZ=OFF
           -DSALVO_DEBUG_LINES_ONLY=ON)

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
    build build "${DEMO_ARGS[@]}"
    log "sending the demo campaign to the built-in sink"
    exec ./deploy/demo/run-demo.sh "$ROOT/build/bin/salvo"
    ;;
  test)
    log "installing Debian packages (deploy/bootstrap.sh)"
    ./deploy/bootstrap.sh all
    log "building with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
    build build-asan "${ASAN_ARGS[@]}"
    log "unit tests under ASan+UBSan"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir build-asan -L unit --no-tests=error --output-on-failure -j "$JOBS" --timeout 300
    if [ -x tests/fuzz/run.sh ]; then
      log "fuzzing (libFuzzer, clang, ASan+UBSan), ${SALVO_FUZZ_SECONDS:-10} s per target"
      tests/fuzz/run.sh "${SALVO_FUZZ_SECONDS:-10}"
    fi
    log "building (build/)"
    build build "${TEST_ARGS[@]}"
    log "the whole suite: unit, integration, lint, benchmark smoke runs"
    ctest --test-dir build --no-tests=error --output-on-failure -j "$JOBS" --timeout 600
    ;;
  cmake-args)
    # For tests/deploy/quickstart_test.sh: the cache options a command passes.
    case "${2:-}" in
      demo) printf '%s\n' "${DEMO_ARGS[@]}" ;;
      asan) printf '%s\n' "${ASAN_ARGS[@]}" ;;
      test) printf '%s\n' "${TEST_ARGS[@]}" ;;
      *) echo "usage: $0 cmake-args demo|asan|test" >&2; exit 2 ;;
    esac
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
