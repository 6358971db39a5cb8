#!/usr/bin/env bash
# A large campaign through the real commands, measured end to end (issue 19,
# point 5): N recipients over D domains loaded with `salvo campaign load`,
# sent plain by `salvo run` to `salvo sink` on loopback, then:
#
#   load time and load rate, spool size on disk after the load and at the end,
#   start-up time with N queued (process start to the sink's first connection
#   and first message: opening the spool and rebuilding its in-memory index),
#   the time SIGTERM takes once messages flow, restart time with (almost) N
#   still queued (the measured run is that restart), send rate, engine CPU per
#   message in the first and the last tenth of the messages, and the feeder
#   thread's share of it (the main thread: leases and outcomes; flat = the queue
#   does not slow down as it empties; the first tenth counts from the first
#   message at the sink, the start-up before it is the restart row's), peak
#   RSS.
#
#   bench/scale.sh [--salvo BIN] [--recipients N] [--domains D] [--size BYTES]
#                  [--timeout SECONDS] [--out FILE]
#
#   defaults: 10,000,000 recipients over 100,000 domains (30% gmail.com,
#   20% yahoo.com, 15% outlook.com, the rest a long tail), 20 KB messages,
#   timeout 3600 s. --out writes the figures as JSON.
#
# Every destination is routed to the sink (`[[route]] domain = "*"`), so the
# engine sees D domains that share one site of 64 connections. The run is
# bounded: the sender is stopped at --timeout whatever it has sent.
# Needs about 0.2 KB of disk per recipient for the spool (2 GB at 10M) plus
# the CSV (50 bytes per recipient), in a temporary folder under $TMPDIR.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SALVO="$HERE/../build/bin/salvo"
N=10000000
D=100000
SIZE=20480
TIMEOUT=3600
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --salvo) SALVO="$2"; shift 2 ;;
    --recipients) N="$2"; shift 2 ;;
    --domains) D="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "scale.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in N D SIZE TIMEOUT; do
  case "${!v}" in ''|*[!0-9]*|0) echo "scale.sh: $v wants a positive integer, got '${!v}'" >&2; exit 2 ;; esac
done
[ -x "$SALVO" ] || { echo "scale.sh: no salvo binary at $SALVO (build first, or --salvo BIN)" >&2; exit 1; }
SALVO="$(readlink -f "$SALVO")"
W="$(mktemp -d "${TMPDIR:-/tmp}/salvo-scale-XXXXXX")"
SINK_PID=""
RUN_PID=""
cleanup() {
  [ -n "$RUN_PID" ] && kill -KILL "$RUN_PID" 2>/dev/null || true
  [ -n "$SINK_PID" ] && { kill -TERM "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null; } || true
  rm -rf "$W"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PY=/usr/bin/python3
now() { date +%s.%N; }

PORT="$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
APORT="$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

echo "scale: generating $N recipients over $D domains in $W" >&2
$PY - "$W" "$N" "$D" "$SIZE" <<'EOF'
import random, sys
w, n, d, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(19)
big = ["gmail.com", "yahoo.com", "outlook.com"]
cum = [0.30, 0.50, 0.65]
tail = max(1, d - len(big))
with open(f"{w}/recipients.csv", "w") as f:
    f.write("email,first_name\n")
    out = []
    for i in range(n):
        r = rng.random()
        if r < cum[0]: dom = big[0]
        elif r < cum[1]: dom = big[1]
        elif r < cum[2]: dom = big[2]
        else: dom = f"tail{i % tail}.example"
        out.append(f"user{i}@{dom},Name{i % 1000}\n")
        if len(out) == 100000:
            f.write("".join(out)); out = []
    f.write("".join(out))
line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
body = (line * (size // len(line) + 1))[:max(0, size - 200)]
with open(f"{w}/message.eml", "w", newline="") as f:
    f.write("From: News <news@scale.example>\r\nSubject: Hello {{first_name}}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body)
EOF

cat > "$W/salvo.toml" <<EOF
data_dir = "$W/data"
log_level = "warning"
[metrics]
listen = ""
[delivery]
connections_per_site = 64
messages_per_connection = 100
in_flight_limit = 20000
[tls]
mode = "off"
[queue]
admin_socket = "$W/admin.sock"
[[route]]
domain = "*"
hosts = ["127.0.0.1:$PORT"]
EOF
cat > "$W/campaign.toml" <<EOF
name = "scale"
template = "message.eml"
recipients = "recipients.csv"
from = "news@scale.example"
[retry]
first_retry_min = "1s"
first_retry_max = "2s"
max_delay = "5s"
max_age = "1d"
EOF

"$SALVO" --log-level error sink --listen "127.0.0.1:$PORT" --shards 1 \
  --stats-file "$W/sink-stats.json" > "$W/sink.log" 2>&1 &
SINK_PID=$!

echo "scale: loading" >&2
t0=$(now)
"$SALVO" --log-level warning campaign load --config "$W/salvo.toml" "$W/campaign.toml" > "$W/load.txt" 2>&1 ||
  { cat "$W/load.txt" >&2; exit 1; }
t1=$(now)
LOAD_S=$($PY -c "print(round($t1 - $t0, 1))")
SPOOL_LOADED=$(du -sb "$W/data" | cut -f1)

sink_messages() {  # the sink's stats file has one '"messages": N,' line
  local m
  m=$(sed -n 's/^  "messages": \([0-9]*\),*$/\1/p' "$W/sink-stats.json" 2>/dev/null | head -1)
  echo "${m:-0}"
}

# First start: from process start to the first message at the sink (the
# spool opened and its index rebuilt with everything queued). Then a restart
# with (almost) everything still queued: SIGTERM once messages flow, and the
# measured run starts again on the same spool. Start-up is timed to the
# first connection at the sink (ss, every 20 ms) and to the first message in
# the sink's stats file (rewritten every second, and within 50 ms when
# messages start after a quiet second).
first_connection() {  # prints the time of the first established connection to the sink
  local pid=$1 limit=$2
  while kill -0 "$pid" 2>/dev/null; do
    if [ -n "$(ss -Htn state established "( dport = :$PORT )" 2>/dev/null | head -1)" ]; then
      now; return 0
    fi
    awk -v t="$(now)" -v d="$limit" 'BEGIN { exit !(t > d) }' && break
    sleep 0.02
  done
  echo 0
}
echo "scale: first start" >&2
t_first=$(now)
"$SALVO" --log-level warning run --config "$W/salvo.toml" > "$W/run-first.log" 2>&1 &
RUN_PID=$!
first_conn=$(first_connection "$RUN_PID" "$($PY -c "print($t_first + 600)")")
first_start_msg=""
while kill -0 "$RUN_PID" 2>/dev/null; do
  if [ "$(sink_messages)" -gt 0 ]; then first_start_msg=$(now); break; fi
  sleep 0.02
done
t_term=$(now)
kill -TERM "$RUN_PID" 2>/dev/null || true
wait "$RUN_PID" 2>/dev/null || true
t_stopped=$(now)
RUN_PID=""
sleep 1.2  # the sink's stats file catches up
QUEUED_AT_RESTART=$((N - $(sink_messages)))
# The first start is stopped once the sink reports a message (within about
# 0.1 s of it, then SIGTERM lets open transactions end). A list that small is
# all sent by then: the restart would have nothing to send and would wait for
# a connection that never comes.
if [ "$QUEUED_AT_RESTART" -le 0 ]; then
  echo "scale.sh: the first start sent all $N recipients before it was stopped, so there is no restart" \
    "to measure; use more --recipients (a tenth of a second of sending is thousands; the default is 10000000)" >&2
  exit 1
fi

echo "scale: restart with $QUEUED_AT_RESTART queued, sending" >&2
t_start=$(now)
"$SALVO" --log-level warning run --config "$W/salvo.toml" > "$W/run.log" 2>&1 &
RUN_PID=$!
restart_conn=$(first_connection "$RUN_PID" "$($PY -c "print($t_start + 600)")")
CLK=$(getconf CLK_TCK)
# Samples: wall time, messages at the sink, CPU ticks of salvo run, RSS kB.
: > "$W/samples"
first_msg=""
m0=$((N - QUEUED_AT_RESTART))
deadline=$($PY -c "print($t_start + $TIMEOUT)")
while kill -0 "$RUN_PID" 2>/dev/null; do
  m=$(sink_messages)
  read -r ut st < <(awk '{print $14, $15}' "/proc/$RUN_PID/stat" 2>/dev/null || echo "0 0")
  # The main thread is the feeder (leases from the spool, records outcomes).
  read -r fut fst < <(awk '{print $14, $15}' "/proc/$RUN_PID/task/$RUN_PID/stat" 2>/dev/null ||
    echo "0 0")
  rss=$(awk '/VmHWM/{print $2}' "/proc/$RUN_PID/status" 2>/dev/null || echo 0)
  # RocksDB's own threads (flush and compaction: "rocksdb:low", "rocksdb:high").
  bg=$(for f in /proc/$RUN_PID/task/*; do
    case "$(cat "$f/comm" 2>/dev/null)" in rocksdb:*) awk '{print $14 + $15}' "$f/stat" 2>/dev/null ;; esac
  done | awk '{s += $1} END {print s + 0}')
  t=$(now)
  echo "$t $m $((ut + st)) $rss $((fut + fst)) $bg" >> "$W/samples"
  if [ -z "$first_msg" ] && [ "$m" -gt "$m0" ]; then first_msg=$t; fi
  [ "$m" -ge "$N" ] && break
  if awk -v t="$t" -v d="$deadline" 'BEGIN { exit !(t > d) }'; then
    echo "scale: timeout after $TIMEOUT s at $m messages" >&2
    break
  fi
  if [ -z "$first_msg" ]; then sleep 0.02; else sleep 0.5; fi  # the first message: to 20 ms
done
kill -TERM "$RUN_PID" 2>/dev/null || true
wait "$RUN_PID" 2>/dev/null || true
RUN_PID=""
sleep 1.2  # the sink rewrites its stats file every second
SPOOL_END=$(du -sb "$W/data" | cut -f1)

$PY - "$W" "$N" "$D" "$SIZE" "$LOAD_S" "$SPOOL_LOADED" "$SPOOL_END" "$t_start" "${first_msg:-0}" "$CLK" "$OUT" \
  "$t_first" "$first_conn" "${first_start_msg:-0}" "$t_term" "$t_stopped" "$QUEUED_AT_RESTART" \
  "$restart_conn" <<'EOF'
import json, sys
w, n, d, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
load_s, spool_loaded, spool_end = float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
t_start, first_msg, clk, out = float(sys.argv[8]), float(sys.argv[9]), int(sys.argv[10]), sys.argv[11]
t_first, first_conn, first_start_msg, t_term, t_stopped = (float(x) for x in sys.argv[12:17])
queued_at_restart, restart_conn = int(sys.argv[17]), float(sys.argv[18])
def since(t0, t):
    return round(t - t0, 2) if t > 0 else None
samples = [tuple(float(x) for x in l.split()) for l in open(f"{w}/samples") if l.strip()]
load_txt = open(f"{w}/load.txt").read().strip().replace("\n", "; ")
sent = int(json.load(open(f"{w}/sink-stats.json")).get("messages", 0))
def at(count):
    # First sample at or past `count` messages.
    for s in samples:
        if s[1] >= count: return s
    return samples[-1]
def cpu_per_msg(lo, hi, col=2):
    a, b = at(lo), at(hi)
    dm = b[1] - a[1]
    return (b[col] - a[col]) / clk * 1e6 / dm if dm > 0 else float("nan")
tenth = n / 10
# Every tenth: whether the cost moves with the campaign's progress or from one
# window to the next (RocksDB's compactions land in whichever tenth they happen
# to run in). The first counts from the first sample with a message at the
# sink: the start-up before it (opening the spool, rebuilding its index) is
# the restart-time row's.
bounds = [at(1)[1]] + [k * tenth for k in range(1, 11)]
by_tenth = [cpu_per_msg(bounds[k], bounds[k + 1]) for k in range(10)]
feeder_by_tenth = [cpu_per_msg(bounds[k], bounds[k + 1], 4) for k in range(10)]
background_by_tenth = [cpu_per_msg(bounds[k], bounds[k + 1], 5) for k in range(10)]
first, last = by_tenth[0], by_tenth[-1]
feeder_first, feeder_last = feeder_by_tenth[0], feeder_by_tenth[-1]
def series(xs):
    return [round(x, 1) if x == x else None for x in xs]
s0, s1 = at(samples[0][1] + 1), at(n)
rate = (s1[1] - s0[1]) / (s1[0] - s0[0]) if s1[0] > s0[0] else float("nan")
peak_rss_mib = max(s[3] for s in samples) / 1024
startup = first_msg - t_start if first_msg else float("nan")
first_conn_s, first_msg_s = since(t_first, first_conn), since(t_first, first_start_msg)
restart_conn_s = since(t_start, restart_conn)
def fmt(x):
    return f"{x:.2f} s" if x is not None else "none"
r = {
    "recipients": n, "domains": d, "message_bytes": size,
    "load_seconds": load_s, "load_per_second": round(n / load_s) if load_s else None,
    "load_report": load_txt,
    "spool_bytes_after_load": spool_loaded, "spool_bytes_at_end": spool_end,
    "startup_seconds_to_first_connection": first_conn_s,
    "startup_seconds_to_first_message": first_msg_s,
    "shutdown_seconds": round(t_stopped - t_term, 2),
    "queued_at_restart": queued_at_restart,
    "restart_seconds_to_first_connection": restart_conn_s,
    "restart_seconds_to_first_message": round(startup, 2) if startup == startup else None,
    "messages_at_sink": sent,
    "send_rate_per_second": round(rate) if rate == rate else None,
    "engine_cpu_us_per_message_first_tenth": round(first, 1) if first == first else None,
    "engine_cpu_us_per_message_last_tenth": round(last, 1) if last == last else None,
    "last_over_first": round(last / first, 3) if first == first and last == last and first > 0 else None,
    "feeder_cpu_us_per_message_first_tenth": round(feeder_first, 1) if feeder_first == feeder_first else None,
    "feeder_cpu_us_per_message_last_tenth": round(feeder_last, 1) if feeder_last == feeder_last else None,
    "engine_cpu_us_per_message_by_tenth": series(by_tenth),
    "feeder_cpu_us_per_message_by_tenth": series(feeder_by_tenth),
    "rocksdb_background_cpu_us_per_message_by_tenth": series(background_by_tenth),
    "peak_rss_mib": round(peak_rss_mib),
}
print(f"Salvo at scale: {n:,} recipients over {d:,} domains, {size:,}-byte messages, "
      f"`salvo campaign load` then `salvo run` to `salvo sink` (one site, 64 connections)")
print()
print("| measure | value |")
print("|---|---|")
print(f"| load | {load_s:.1f} s ({n / load_s:,.0f} recipients/s) |")
print(f"| spool on disk after load / at end | {spool_loaded / 2**20:,.0f} MiB / {spool_end / 2**20:,.0f} MiB |")
print(f"| first start with {n:,} queued: to first connection / first message at the sink | "
      f"{fmt(first_conn_s)} / {fmt(first_msg_s)} |")
print(f"| SIGTERM to exit, once messages flow | {t_stopped - t_term:.2f} s |")
print(f"| restart with {queued_at_restart:,} queued: to first connection / first message at the sink | "
      f"{fmt(restart_conn_s)} / {fmt(startup if startup == startup else None)} |")
print(f"| messages at the sink | {sent:,} of {n:,} |")
# A figure that could not be measured (a tenth that fell between two samples
# of a small run, or was sent before the restart) says so instead of "nan".
def us(x):
    return f"{x:.1f} us" if x == x else "n/a"
ratio = f"{last / first:.2f}x" if first == first and last == last and first > 0 else "n/a"
print(f"| send rate | {f'{rate:,.0f} msg/s' if rate == rate else 'n/a'} |")
print(f"| engine CPU per message, first tenth / last tenth | {us(first)} / {us(last)} ({ratio}) |")
print(f"| of it the feeder thread (leases, outcomes), first / last tenth | "
      f"{us(feeder_first)} / {us(feeder_last)} |")
def row(xs):
    return " / ".join(f"{x:.1f}" if x == x else "n/a" for x in xs)
print(f"| engine CPU per message, every tenth (us) | {row(by_tenth)} |")
print(f"| of it the feeder thread, every tenth (us) | {row(feeder_by_tenth)} |")
print(f"| of it RocksDB's flush and compaction threads, every tenth (us) | {row(background_by_tenth)} |")
print(f"| peak RSS of `salvo run` | {peak_rss_mib:,.0f} MiB |")
if out:
    with open(out, "w") as f: json.dump(r, f, indent=2)
sys.exit(0 if sent == n else 1)
EOF
