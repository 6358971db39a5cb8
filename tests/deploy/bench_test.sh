#!/usr/bin/env bash
# `salvo bench` keeps working end to end (a small run, not timed): plain with
# dual DKIM signing, and with STARTTLS required on every connection (required
# mode fails delivery if TLS is not negotiated, so delivered == N shows TLS ran),
# and --max-connections holding the generated delivery.max_connections.
set -euo pipefail
SALVO=${1:?usage: $0 PATH/TO/salvo}
check() {  # check NAME ARGS...
  local name=$1; shift
  out=$(timeout 300 "$SALVO" bench --recipients 300 --domains 10 --size 4k --json --timeout 240 "$@")
  /usr/bin/python3 - "$name" "$out" <<'PY'
import json, sys
name, d = sys.argv[1], json.loads(sys.argv[2])
keys = ["messages_per_second", "engine_cpu_us_per_message", "peak_rss_bytes", "peak_sessions",
        "latency_ms_p50", "latency_ms_p99", "delivered", "bounced", "deferred"]
missing = [k for k in keys if k not in d]
assert not missing, f"{name}: JSON lacks {missing}"
assert d["delivered"] == 300 and d["bounced"] == 0, f"{name}: {d}"
assert d["completed"] and d["peak_sessions"] >= 1 and d["peak_rss_bytes"] > 0, f"{name}: {d}"
assert 0 < d["latency_ms_p50"] <= d["latency_ms_p99"], f"{name}: {d}"
# The built-in sink's CPU is measured apart from the engine's; the crypto
# floor is measured both idle and during the run.
assert d["sink_cpu_us_per_message"] > 0, f"{name}: {d}"
assert d["crypto_floor_us_per_message"] > 0 and d["crypto_floor_idle_us_per_message"] > 0, f"{name}: {d}"
# The sink counted every message the engine says it delivered.
assert d["sink_messages"] == d["delivered"], f"{name}: {d}"
if "STARTTLS" in name:
    # Every connection negotiated TLS, and once a ticket was in hand the
    # next connections resumed instead of a full handshake.
    # (one plain connection: bench's probe that the sink listens)
    assert d["sink_tls_sessions"] == d["sink_connections"] - 1, f"{name}: {d}"
    assert d["sink_tls_resumed"] * 2 >= d["sink_tls_sessions"] > 0, f"{name}: {d}"
if "max-connections" in name:
    # delivery.max_connections of the generated config holds: one shard (its
    # peak is exact), 10 domains over 4 sink addresses at 16 each would open
    # far more than 3.
    assert d["max_connections"] == 3 and d["peak_sessions"] <= 3, f"{name}: {d}"
elif "STARTTLS" not in name:
    assert d["max_connections"] == 0 and d["peak_sessions"] > 3, f"{name}: {d}"
print(f"{name}: ok, {d['delivered']} delivered")
PY
}
check "dkim both, no TLS" --dkim both --tls off
check "max-connections 3" --dkim none --shards 1 --max-connections 3
check "STARTTLS required" --dkim ed25519 --tls on --connections 1 --messages-per-connection 10
