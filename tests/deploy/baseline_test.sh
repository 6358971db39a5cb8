#!/usr/bin/env bash
# bench/baseline.sh --quick: the script runs end to end against the real
# binary, prints every row of its table, and its ceiling and ratio are the
# documented formula applied to the figures it measured (not a speed check).
set -euo pipefail
SALVO="$1"
HERE="$(cd "$(dirname "$0")" && pwd)"
W="$(mktemp -d /tmp/salvo-baseline-test-XXXXXX)"
trap 'rm -rf "$W"' EXIT
"$HERE/../../bench/baseline.sh" --salvo "$SALVO" --quick --out "$W/raw.json" >"$W/table.txt"
cat "$W/table.txt"
for row in '`salvo bench --dkim rsa2048` msg/s' 'plain: engine CPU us/msg' 'recipients plain msg/s' 'peak RSS MiB' \
           'signed, everything on' 'plain, everything on' 'signed, steady part (10% to 90% done)' \
           'plain, steady part (10% to 90% done)' 'signed, everything on, against its own ceiling'; do
  grep -qF "$row" "$W/table.txt" || { echo "FAIL: row '$row' missing" >&2; exit 1; }
done
if [ -x /usr/sbin/smtp-source ]; then
  grep -qF 'smtp-source -s 100' "$W/table.txt" || { echo "FAIL: smtp-source row missing" >&2; exit 1; }
fi
python3 - "$W/raw.json" <<'PY'
import json, sys
raw = json.load(open(sys.argv[1]))
assert raw["runs"], "no runs recorded"
for r in raw["runs"]:
    s = r["signed"]
    assert s["delivered"] > 0 and r["plain"]["delivered"] > 0, "a run delivered nothing"
    assert r["openssl_signs_per_second"] > 0
    for k in ("steady_messages_per_second", "steady_engine_cpu_us_per_message", "first_done_ms", "last_tenth_ms"):
        assert k in s and k in r["plain"], (k, s)
    c = raw["cores"]
    want = c / (c / r["openssl_signs_per_second"] + s["sink_cpu_us_per_message"] * 1e-6)
    assert abs(r["ceiling"] - want) < 1e-6 * want, (r["ceiling"], want)
    assert r["ceiling"] < r["openssl_signs_per_second"] * 1.0001, "ceiling above the bare signing rate"
    # The everything-on signed run's own ceiling: both signatures and the sink.
    sa = r["signed_everything_on"]
    assert r["openssl_ed25519_signs_per_second"] > 0
    want = c / (c / r["openssl_signs_per_second"] + c / r["openssl_ed25519_signs_per_second"]
                + sa["sink_cpu_us_per_message"] * 1e-6)
    assert abs(r["dual_ceiling"] - want) < 1e-6 * want, (r["dual_ceiling"], want)
    both = c / (c / r["openssl_signs_per_second"] + c / r["openssl_ed25519_signs_per_second"])
    assert r["dual_ceiling"] < both * 1.0001, "dual ceiling above the rate of the two signatures alone"
    for k in ("signed_everything_on", "plain_everything_on"):
        assert r[k]["everything_on"] and r[k]["delivered"] > 0 and r[k]["http_scrapes"] >= 1, (k, r[k])
    assert r["signed_everything_on"]["dkim"] == "both" and r["plain_everything_on"]["dkim"] == "none"
assert raw["scale"]["delivered"] > 0
print("baseline_test: ok")
PY
