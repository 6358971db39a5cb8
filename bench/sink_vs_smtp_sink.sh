#!/bin/bash
# Benchmark: messages/s and CPU per message that `salvo sink` absorbs from
# Postfix's smtp-source, compared in the same run with Postfix's smtp-sink.
#
#   bench/sink_vs_smtp_sink.sh [path/to/salvo]
#   env: MESSAGES (50000) SESSIONS (100) SIZE (20480) SHARDS (1) TIMEOUT (300 s per run)
#
# CPU per message is utime+stime of the sink process (all its threads) from
# /proc/PID/stat, divided by the messages received. Figures only: nothing is
# asserted. Needs smtp-source and smtp-sink (package postfix).
set -euo pipefail

SALVO=${1:-$(dirname "$0")/../build/bin/salvo}
MESSAGES=${MESSAGES:-50000}
SESSIONS=${SESSIONS:-100}
SIZE=${SIZE:-20480}
SHARDS=${SHARDS:-1}
TIMEOUT=${TIMEOUT:-300}
TICK=$(getconf CLK_TCK)

for tool in smtp-source smtp-sink; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "error: $tool not found (install postfix: deploy/bootstrap.sh)" >&2; exit 1; }
done
[ -x "$SALVO" ] || { echo "error: salvo binary not found at $SALVO (build it first)" >&2; exit 1; }
PATH=$PATH:/usr/sbin

WORK=$(mktemp -d /tmp/salvo-sink-bench.XXXXXX)
SINK_PID=
cleanup() {
  if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then
    kill "$SINK_PID" 2>/dev/null || true
    sleep 0.2
    kill -9 "$SINK_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_ticks() {  # utime + stime of a process, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# run_one NAME PORT: drives the sink in $SINK_PID with smtp-source, prints a result line.
run_one() {
  local name=$1 port=$2
  local c0 c1 t0 t1
  c0=$(cpu_ticks "$SINK_PID")
  t0=$(date +%s.%N)
  if ! timeout "$TIMEOUT" smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" \
      -f bench@example.org -t rcpt@example.net "127.0.0.1:$port" >"$WORK/$name.source" 2>&1; then
    echo "warning: smtp-source against $name failed or timed out: $(tail -1 "$WORK/$name.source")" >&2
  fi
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$SINK_PID")
  awk -v n="$name" -v m="$MESSAGES" -v t0="$t0" -v t1="$t1" -v c0="$c0" -v c1="$c1" -v tick="$TICK" \
    'BEGIN { el = t1 - t0; cpu = (c1 - c0) / tick;
             printf "%-12s %8d msgs  %7.2f s  %9.0f msgs/s  sink CPU %6.2f s  %7.1f us/msg\n",
                    n, m, el, m / el, cpu, cpu / m * 1e6 }'
}

echo "smtp-source -s $SESSIONS -m $MESSAGES -l $SIZE; $(nproc) CPUs; salvo sink --shards $SHARDS"

# --- salvo sink ---
"$SALVO" sink --listen 127.0.0.1:0 --shards "$SHARDS" --stats-file "$WORK/salvo.json" \
  >"$WORK/salvo.out" 2>&1 &
SINK_PID=$!
PORT=
for _ in $(seq 100); do
  PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$WORK/salvo.out" | head -1 | cut -d: -f2 || true)
  [ -n "$PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] || { echo "error: salvo sink did not start: $(cat "$WORK/salvo.out")" >&2; exit 1; }
run_one "salvo-sink" "$PORT"
kill "$SINK_PID"; wait "$SINK_PID" || true; SINK_PID=
echo "  salvo sink counted: $(tail -1 "$WORK/salvo.out" | sed 's/.*exiting: //')"

# --- Postfix smtp-sink (as root it must drop privileges: -u nobody) ---
PORT=$(free_port)
USER_OPT=()
[ "$(id -u)" = 0 ] && USER_OPT=(-u nobody)
smtp-sink "${USER_OPT[@]}" "127.0.0.1:$PORT" 1024 >"$WORK/smtp-sink.out" 2>&1 &
SINK_PID=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
  sleep 0.05
done
run_one "smtp-sink" "$PORT"
kill "$SINK_PID"; wait "$SINK_PID" 2>/dev/null || true; SINK_PID=
