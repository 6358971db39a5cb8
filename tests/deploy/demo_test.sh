#!/usr/bin/env bash
# The README's demo must keep working: run it (smaller) in a temp folder and
# check that every recipient ended delivered or bounced, matching the sink.
set -euo pipefail
SALVO=${1:?usage: $0 PATH/TO/salvo}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
SALVO_DEMO_RECIPIENTS=300 timeout 240 "$SRC/deploy/demo/run-demo.sh" "$SALVO" >out.txt 2>err.txt || {
  echo "demo failed:"; cat out.txt err.txt; exit 1; }
cat out.txt
line=$(grep -E '^campaign [0-9]+ finished' out.txt) || { echo "no summary line"; exit 1; }
delivered=$(sed -E 's/.*delivered ([0-9]+).*/\1/' <<<"$line")
bounced=$(sed -E 's/.*bounced ([0-9]+).*/\1/' <<<"$line")
if [ $((delivered + bounced)) -ne 300 ]; then echo "expected 300 final recipients: $line"; exit 1; fi
sink_msgs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' demo-data/sink-stats.json)
if [ "$sink_msgs" -ne "$delivered" ]; then echo "sink saw $sink_msgs messages, engine says $delivered"; exit 1; fi
saved=$(ls demo-data/received | grep -c '\.eml$' || true)
if [ "$saved" -ne "$delivered" ]; then echo "sink saved $saved messages, engine says $delivered"; exit 1; fi
echo "demo ok: $delivered delivered, $bounced bounced, sink agrees"
