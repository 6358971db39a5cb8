#!/usr/bin/env bash
# `salvo bench --everything-on` turns on what it says (a small run, not timed):
# the delivery log is written (a line per recipient), every copy reaches the
# sink with a VERP return path of the bench's bounce domain, signed copies
# carry two DKIM-Signature headers (RSA and Ed25519), the metrics endpoint was
# scraped over HTTP at least once without a failure, and the shaping file is
# in force. The plain variant (--dkim none) keeps everything else on.
set -euo pipefail
SALVO=${1:?usage: $0 PATH/TO/salvo}
W="$(mktemp -d /tmp/salvo-bench-everything-XXXXXX)"
SINK_PID=""
cleanup() {
  [ -n "$SINK_PID" ] && { kill -TERM "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null; } || true
  rm -rf "$W"
}
trap cleanup EXIT
N=200
check() {  # check NAME DKIM_HEADERS ARGS...
  local name=$1 want_dkim=$2; shift 2
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  rm -rf "$W/saved" "$W/delivery.log"; mkdir -p "$W/saved"
  "$SALVO" --log-level error sink --listen "127.0.0.1:$port" --shards 1 --save-dir "$W/saved" \
    > "$W/sink.log" 2>&1 &
  SINK_PID=$!
  for _ in $(seq 100); do  # up to 5 s for the sink to listen
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
    sleep 0.05
  done
  timeout 300 "$SALVO" bench --everything-on --recipients "$N" --domains 10 --size 4k --json \
    --timeout 240 --sink "127.0.0.1:$port" --delivery-log "$W/delivery.log" "$@" > "$W/out.json"
  kill -TERM "$SINK_PID"; wait "$SINK_PID" 2>/dev/null || true; SINK_PID=""
  python3 - "$name" "$want_dkim" "$N" "$W" <<'PY'
import glob, json, os, re, sys
name, want_dkim, n, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
d = json.load(open(os.path.join(w, "out.json")))
assert d["everything_on"] and d["completed"], f"{name}: {d}"
assert d["delivered"] == n and d["bounced"] == 0, f"{name}: {d}"
# The metrics endpoint answered every scrape with the engine's counters.
assert d["http_scrapes"] >= 1 and d["http_scrape_failures"] == 0, f"{name}: {d}"
assert d["metrics"] and d["http_scrape_bytes_last"] > 0, f"{name}: {d}"
assert d["shaping_file"], f"{name}: {d}"
# The delivery log: one line per delivered recipient, none dropped.
lines = [l for l in open(os.path.join(w, "delivery.log")) if l.strip()]
assert d["delivery_log_lines"] == len(lines) >= n and d["delivery_log_dropped"] == 0, (name, len(lines), d)
# VERP: every copy has one recipient and a return path PREFIX+TOKEN@bounces.bench.example.
envs = sorted(glob.glob(os.path.join(w, "saved", "*.env")))
assert len(envs) == n, f"{name}: {len(envs)} copies at the sink, want {n}"
for e in envs:
    text = open(e).read()
    mail = re.search(r"MAIL FROM:\s*<([^>]*)>", text, re.I)
    assert mail and re.fullmatch(r"bounces\+[a-z0-9-]+@bounces\.bench\.example", mail.group(1)), (name, e, text)
    assert len(re.findall(r"RCPT TO:", text, re.I)) == 1, (name, e, text)
    eml = open(e[:-4] + ".eml", "rb").read().split(b"\r\n\r\n", 1)[0]
    sigs = re.findall(rb"^DKIM-Signature:.*?\ba=([a-z0-9-]+)", eml, re.M | re.I | re.S)
    assert len(sigs) == want_dkim, (name, e, sigs)
    if want_dkim == 2:
        assert sorted(s.lower() for s in sigs) == [b"ed25519-sha256", b"rsa-sha256"], (name, sigs)
print(f"{name}: ok, {n} delivered, {d['http_scrapes']} scrapes, {len(lines)} log lines")
PY
}
check "everything on, signed" 2
check "everything on, plain" 0 --dkim none
