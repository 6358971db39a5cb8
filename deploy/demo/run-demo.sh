#!/usr/bin/env bash
# The demo behind `./deploy/quickstart.sh demo`: starts the built-in sink on
# loopback (injecting 3% hard bounces and 5% deferrals), generates a
# 1,000-recipient campaign and a DKIM key, sends the campaign with
# `salvo send` (RocksDB spool in ./demo-data, a routing override so no DNS or
# internet is needed), then prints what the engine and the sink counted.
# Usage: deploy/demo/run-demo.sh PATH/TO/salvo
set -euo pipefail
SALVO=${1:?usage: $0 PATH/TO/salvo}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(pwd)/demo-data
RECIPIENTS=${SALVO_DEMO_RECIPIENTS:-1000}

rm -rf "$WORK"
mkdir -p "$WORK/received"
cleanup() { [ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null; true; }
trap cleanup EXIT

# A free loopback port for the sink.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

echo "demo: starting salvo sink on 127.0.0.1:$PORT (3% bounces, 5% deferrals)"
"$SALVO" --log-level warning sink --listen "127.0.0.1:$PORT" --bounce-rate 0.03 --defer-rate 0.05 \
  --seed 7 --stats-file "$WORK/sink-stats.json" --save-dir "$WORK/received" &
SINK_PID=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
if ! kill -0 "$SINK_PID" 2>/dev/null; then
  echo "demo: the sink did not start (see the error above)" >&2
  exit 1
fi

echo "demo: generating a DKIM key and $RECIPIENTS recipients"
"$SALVO" dkim keygen --domain demo.example --selector demo --type ed25519 --out "$WORK" >"$WORK/dkim-record.txt"
KEY=$(ls "$WORK"/*.pem | head -n 1)
{
  echo "email,first_name,city,code"
  for i in $(seq 1 "$RECIPIENTS"); do
    case $((i % 4)) in
      0) d=gmail.com ;; 1) d=yahoo.com ;; 2) d=outlook.com ;; *) d="shop$((i % 7)).example" ;;
    esac
    echo "reader$i@$d,Reader $i,City $((i % 13)),SPRING-$i"
  done
} >"$WORK/recipients.csv"

cat >"$WORK/salvo.toml" <<TOML
data_dir = "$WORK/spool"
shards = 2
log_level = "warning"

[routes]
"*" = "127.0.0.1:$PORT"

[[dkim.keys]]
domain = "demo.example"
selector = "demo"
key_file = "$KEY"
type = "ed25519"
TOML

cat >"$WORK/campaign.toml" <<TOML
name = "spring-demo"
template = "$HERE/message.eml"
recipients = "$WORK/recipients.csv"
from = "news@demo.example"
dkim_domain = "demo.example"

# Deferred recipients are retried within seconds so the demo finishes quickly
# (the defaults retry after 5-20 minutes, like the big MTAs).
[retry]
first_retry_min = "1s"
first_retry_max = "2s"
max_delay = "4s"
max_age = "2m"
TOML

echo "demo: salvo send --config $WORK/salvo.toml $WORK/campaign.toml"
"$SALVO" send --config "$WORK/salvo.toml" "$WORK/campaign.toml"

kill -TERM "$SINK_PID"
wait "$SINK_PID" 2>/dev/null || true
SINK_PID=
echo
echo "demo: what the sink received ($WORK/sink-stats.json):"
python3 - "$WORK/sink-stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for k in ("connections", "messages", "recipients_accepted", "recipients_bounced", "recipients_deferred"):
    if k in s: print(f"  {k:22} {s[k]}")
PY
echo "demo: saved messages are in $WORK/received; the DKIM record to publish is in $WORK/dkim-record.txt"
echo "demo: inspect the campaign with: $SALVO campaign status spring-demo --data-dir $WORK/spool"
