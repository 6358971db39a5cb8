#!/usr/bin/env bash
# Engine benchmark: many concurrent SMTP sessions against `salvo sink`.
#   bench/engine_sessions.sh [SALVO_BINARY] [SESSIONS]
# Four sink addresses (127.0.0.2-5) in one sink process with slow replies
# (--delay-ms) keep sessions open; four destination domains are routed one per
# address (four sites, SESSIONS/4 connections each, 2 messages per connection).
# Prints peak concurrent sessions, messages/s, and the engine's RSS growth per
# session ((peak RSS - RSS before the engine started) / peak sessions), no TLS.
set -euo pipefail
SALVO="${1:-$(dirname "$0")/../build/bin/salvo}"
SESSIONS="${2:-10000}"
SALVO="$(readlink -f "$SALVO")"
W="$(mktemp -d /tmp/salvo-bench-sessions-XXXXXX)"
SINK_PID=""
cleanup() { [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
cd "$W"
"$SALVO" sink --listen 127.0.0.2:0 --listen 127.0.0.3:0 --listen 127.0.0.4:0 --listen 127.0.0.5:0 \
  --shards 1 --delay-ms 300 --stats-file sink.json >sink.log 2>&1 &
SINK_PID=$!
for _ in $(seq 100); do [ -s sink.json ] && break; sleep 0.05; done
mapfile -t ADDRS < <(/usr/bin/python3 -c "import json;print('\n'.join(json.load(open('sink.json'))['listen']))")
PER_SITE=$(( SESSIONS / 4 ))
MSGS=$(( SESSIONS * 2 ))
{
  echo 'data_dir = "data"'
  echo 'shards = 2'
  echo 'log_level = "warning"'
  echo '[tls]'
  echo 'mode = "off"'
  echo '[delivery]'
  echo "connections_per_site = $PER_SITE"
  echo "in_flight_limit = $MSGS"
  echo 'messages_per_connection = 2'
  echo '[queue]'
  echo 'lease_batch = 20000'
  echo '[routes]'
  for i in 0 1 2 3; do echo "\"d$i.example\" = \"${ADDRS[$i]}\""; done
} >salvo.toml
printf 'From: bench@sender.example\nSubject: hi {{name}}\n\n%s\n' "$(head -c 700 /dev/zero | tr '\0' 'x')" >msg.eml
/usr/bin/python3 -c "
print('email,name')
for i in range($MSGS): print(f'u{i}@d{i%4}.example,n{i}')" >list.csv
printf 'name = "sessions"\ntemplate = "msg.eml"\nrecipients = "list.csv"\nfrom = "bench@sender.example"\n' >camp.toml
# Sample the sink's open connections while the engine runs.
( peak=0; while kill -0 "$SINK_PID" 2>/dev/null; do
    n=$(/usr/bin/python3 -c "import json;print(json.load(open('sink.json')).get('connections_open',0))" 2>/dev/null || echo 0)
    [ "$n" -gt "$peak" ] && peak=$n && echo "$peak" >sink-peak.txt; sleep 0.5; done ) &
SAMPLER=$!
timeout 600 "$SALVO" send camp.toml --config salvo.toml --json >result.json 2>send.err || { cat send.err; exit 1; }
kill "$SAMPLER" 2>/dev/null || true
/usr/bin/python3 - "$SESSIONS" <<'PY'
import json, sys
r = json.load(open("result.json"))
peak = r["peak_sessions"]
growth = r["peak_rss_bytes"] - r["rss_before_engine_bytes"]
try:
    sink_peak = int(open("sink-peak.txt").read())
except Exception:
    sink_peak = 0
print(f"target sessions         {sys.argv[1]}")
print(f"peak concurrent sessions {peak} (engine), {sink_peak} (sink sampled)")
print(f"messages delivered       {r['delivered']} in {r['seconds']:.2f} s = {r['delivered']/r['seconds']:.0f} msg/s")
print(f"engine CPU               {r['engine_cpu_seconds']:.2f} s")
print(f"RSS before engine        {r['rss_before_engine_bytes']/2**20:.1f} MiB, peak {r['peak_rss_bytes']/2**20:.1f} MiB")
print(f"RSS growth per session   {growth/max(peak,1)/1024:.1f} KiB (target <= 64 KiB, no TLS)")
PY
