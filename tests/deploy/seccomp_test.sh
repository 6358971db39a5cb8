#!/usr/bin/env bash
# deploy/seccomp-salvo.json is enough to run Salvo: the demo (sink, dkim
# keygen, send with the RocksDB queue) runs with every salvo process confined
# by the profile, as in a container started with
# --security-opt seccomp=deploy/seccomp-salvo.json. And without io_uring_setup
# in the profile, salvo says why in one line and exits 1.
set -euo pipefail
SALVO=${1:?usage: $0 PATH/TO/salvo}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PROFILE="$SRC/deploy/seccomp-salvo.json"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

for call in io_uring_setup io_uring_enter io_uring_register; do
  grep -q "\"$call\"" "$PROFILE" || { echo "profile lacks $call"; exit 1; }
done

cat >"$TMP/salvo-confined" <<SH
#!/bin/sh
exec /usr/bin/python3 "$SRC/tests/deploy/seccomp_confine.py" "$PROFILE" -- "$SALVO" "\$@"
SH
chmod +x "$TMP/salvo-confined"

cd "$TMP"
if ! SALVO_DEMO_RECIPIENTS=200 timeout 240 "$SRC/deploy/demo/run-demo.sh" "$TMP/salvo-confined" >out.txt 2>err.txt; then
  echo "demo under the seccomp profile failed:"; cat out.txt err.txt; exit 1
fi
line=$(grep -E '^campaign [0-9]+ finished' out.txt) || { echo "no summary"; cat out.txt err.txt; exit 1; }
delivered=$(sed -E 's/.*delivered ([0-9]+).*/\1/' <<<"$line")
[ "$delivered" -gt 150 ] || { echo "too few delivered under the profile: $line"; exit 1; }
echo "confined demo ok: $line"

# The same profile without io_uring_setup: the start-up check names the cause.
set +e
err=$(/usr/bin/python3 "$SRC/tests/deploy/seccomp_confine.py" "$PROFILE" --drop io_uring_setup -- \
  "$SALVO" sink --listen 127.0.0.1:0 2>&1 >/dev/null)
rc=$?
set -e
[ "$rc" -eq 1 ] || { echo "expected exit 1 without io_uring_setup, got $rc: $err"; exit 1; }
grep -q "io_uring is unavailable" <<<"$err" || { echo "no clear message: $err"; exit 1; }
[ "$(printf '%s\n' "$err" | grep -c .)" -eq 1 ] || { echo "expected one line: $err"; exit 1; }
echo "without io_uring_setup: $err"
