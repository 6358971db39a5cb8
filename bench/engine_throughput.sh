#!/usr/bin/env bash
# Engine benchmark: plain delivery (no TLS, no DKIM) of N messages of ~20 KB to
# `salvo sink` on loopback, and Postfix's `smtp-source -s 100` to the same
# sink in the same run.
#   bench/engine_throughput.sh [SALVO_BINARY] [MESSAGES]
# Four sink addresses in one sink process (4 destination domains = 4 sites,
# 25 connections each = 100 sessions like smtp-source -s 100). Prints
# messages/s and CPU per message for both; Salvo's figures are the engine run
# only (the campaign load into RocksDB is reported apart).
set -euo pipefail
SALVO="${1:-$(dirname "$0")/../build/bin/salvo}"
N="${2:-100000}"
SALVO="$(readlink -f "$SALVO")"
W="$(mktemp -d /tmp/salvo-bench-tput-XXXXXX)"
SINK_PID=""
cleanup() { [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
cd "$W"
"$SALVO" sink --listen 127.0.0.2:0 --listen 127.0.0.3:0 --listen 127.0.0.4:0 --listen 127.0.0.5:0 \
  --shards 1 --stats-file sink.json >sink.log 2>&1 &
SINK_PID=$!
for _ in $(seq 100); do [ -s sink.json ] && break; sleep 0.05; done
mapfile -t ADDRS < <(/usr/bin/python3 -c "import json;print('\n'.join(json.load(open('sink.json'))['listen']))")
{
  echo 'data_dir = "data"'
  echo 'shards = 2'
  echo 'log_level = "warning"'
  echo '[tls]'
  echo 'mode = "off"'
  echo '[delivery]'
  echo 'connections_per_site = 25'
  echo 'messages_per_connection = 1000'
  echo 'in_flight_limit = 20000'
  echo '[queue]'
  echo 'lease_batch = 5000'
  echo '[routes]'
  for i in 0 1 2 3; do echo "\"d$i.example\" = \"${ADDRS[$i]}\""; done
} >salvo.toml
/usr/bin/python3 - <<'PY'
line = "The quick brown fox jumps over the lazy dog, again and again and again.\n"
body = (line * (20480 // len(line) + 1))[:20480]
open("msg.eml", "w").write("From: bench@sender.example\nSubject: bench {{name}}\n\n" + body)
PY
/usr/bin/python3 -c "
print('email,name')
for i in range($N): print(f'u{i}@d{i%4}.example,n{i}')" >list.csv
printf 'name = "tput"\ntemplate = "msg.eml"\nrecipients = "list.csv"\nfrom = "bench@sender.example"\n' >camp.toml

cpu_of() { # prints "wall user sys" of a command
  /usr/bin/python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
rc = subprocess.call(sys.argv[1:], stdout=open("cmd.out", "w"), stderr=open("cmd.err", "w"))
wall = time.monotonic() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.3f} {ru.ru_utime:.3f} {ru.ru_stime:.3f} {rc}")
PY
}

read -r WALL USR SYS RC < <(cpu_of "$SALVO" send camp.toml --config salvo.toml --json)
[ "$RC" = 0 ] || { cat cmd.err; exit 1; }
cp cmd.out salvo.json
sleep 1.2  # the sink rewrites its stats file every second
S_BEFORE=$(/usr/bin/python3 -c "import json;print(json.load(open('sink.json'))['messages'])")
read -r PWALL PUSR PSYS PRC < <(cpu_of /usr/sbin/smtp-source -s 100 -m "$N" -l 20480 \
  -f bench@sender.example -t u@d0.example "${ADDRS[0]}")
sleep 1.2
S_AFTER=$(/usr/bin/python3 -c "import json;print(json.load(open('sink.json'))['messages'])")
/usr/bin/python3 - "$N" "$WALL" "$USR" "$SYS" "$PWALL" "$PUSR" "$PSYS" "$PRC" "$S_BEFORE" "$S_AFTER" <<'PY'
import json, sys
n = int(sys.argv[1]); wall, usr, sys_ = map(float, sys.argv[2:5])
pwall, pusr, psys = map(float, sys.argv[5:8]); prc = sys.argv[8]
before, after = int(sys.argv[9]), int(sys.argv[10])
r = json.load(open("salvo.json"))
d = r["delivered"]
print(f"messages: {n} x 20 KB, plain SMTP (no TLS, no DKIM), sink: salvo sink (1 shard), 2-core box")
print(f"salvo send: delivered {d}, engine {r['seconds']:.2f} s = {d/r['seconds']:.0f} msg/s, "
      f"engine CPU {r['engine_cpu_seconds']:.2f} s = {r['engine_cpu_seconds']/max(d,1)*1e6:.1f} us/msg; "
      f"whole process incl. campaign load {wall:.2f} s wall, {usr+sys_:.2f} s CPU; "
      f"peak sessions {r['peak_sessions']}")
got = after - before
print(f"smtp-source -s 100: sink counted {got} messages in {pwall:.2f} s = {got/pwall:.0f} msg/s, "
      f"CPU {pusr+psys:.2f} s = {(pusr+psys)/max(got,1)*1e6:.1f} us/msg (exit {prc})")
PY
