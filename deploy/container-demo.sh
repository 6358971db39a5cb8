#!/usr/bin/env bash
# The container image end to end with podman: builds the image when it does
# not exist (deploy/build-image.sh), then with the shipped seccomp profile
# (deploy/seccomp-salvo.json) runs the sink and a `salvo run` node from it as
# the image's non-root user, loads a demo campaign into the node with
# `podman exec`, waits until it is sent, checks the health check and the
# sink's counts, and stops the node with SIGTERM (it must exit 0 within the
# grace period). Also checks that without the profile (the runtime's default
# blocks io_uring) salvo says why in one line and exits 1.
#   deploy/container-demo.sh [IMAGE]          (default localhost/salvo:latest)
# Needs root, podman and runc. SALVO_DEMO_RECIPIENTS: campaign size (500).
set -euo pipefail
DEPLOY=$(cd "$(dirname "$0")" && pwd)
IMAGE=${1:-localhost/salvo:latest}
N=${SALVO_DEMO_RECIPIENTS:-500}
PODMAN=(podman --runtime runc)
SECCOMP="$DEPLOY/seccomp-salvo.json"
# runc cannot raise limits above this shell's (see build-image.sh).
LIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
RUN=("${PODMAN[@]}" run --network host --security-opt "seccomp=$SECCOMP" "${LIMITS[@]}")

if ! "${PODMAN[@]}" image exists "$IMAGE"; then
  "$DEPLOY/build-image.sh" "$IMAGE"
fi
WORK=$(mktemp -d)
SINK=salvo-demo-sink-$$
NODE=salvo-demo-node-$$
cleanup() {
  "${PODMAN[@]}" rm -f -t 0 "$SINK" "$NODE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fail() { echo "container-demo: FAIL: $*" >&2; "${PODMAN[@]}" logs "$NODE" 2>&1 | tail -20 >&2 || true; exit 1; }

# Volumes the image's user (uid 10001) can write.
mkdir -p "$WORK/sink" "$WORK/spool" "$WORK/campaign"
chmod 0777 "$WORK/sink" "$WORK/spool"
PORT=$(free_port)
METRICS=$(free_port)
cat >"$WORK/salvo.toml" <<TOML
data_dir = "/var/lib/salvo"
shards = 2
[routes]
"*" = "127.0.0.1:$PORT"
[metrics]
listen = "127.0.0.1:$METRICS"
[delivery]
shutdown_deadline = "10s"
TOML
cp "$DEPLOY/demo/message.eml" "$WORK/campaign/message.eml"
{
  echo "email,first_name,city,code"
  for i in $(seq 1 "$N"); do echo "reader$i@shop$((i % 5)).example,Reader $i,City $((i % 13)),C-$i"; done
} >"$WORK/campaign/recipients.csv"
cat >"$WORK/campaign/campaign.toml" <<TOML
name = "container-demo"
template = "message.eml"
recipients = "recipients.csv"
from = "news@demo.example"
TOML

echo "container-demo: image $IMAGE ($("${PODMAN[@]}" run --rm "${LIMITS[@]}" --security-opt "seccomp=$SECCOMP" "$IMAGE" --version))"
"${RUN[@]}" -d --no-healthcheck --name "$SINK" -v "$WORK/sink:/var/lib/salvo" "$IMAGE" \
  sink --listen "127.0.0.1:$PORT" --stats-file /var/lib/salvo/sink.json >/dev/null
"${RUN[@]}" -d --name "$NODE" -v "$WORK/spool:/var/lib/salvo" \
  -v "$WORK/salvo.toml:/etc/salvo/salvo.toml:ro" -v "$WORK/campaign:/campaign:ro" "$IMAGE" >/dev/null
[ "$("${PODMAN[@]}" inspect --format '{{.Config.User}}' "$NODE")" = "10001:10001" ] || fail "not the non-root user"

ok=
for _ in $(seq 150); do
  if "${PODMAN[@]}" exec "$NODE" salvo health --config /etc/salvo/salvo.toml >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || fail "salvo health never passed in the node"
echo "container-demo: salvo health passes in the node"
"${PODMAN[@]}" exec "$NODE" salvo campaign load /campaign/campaign.toml --config /etc/salvo/salvo.toml >/dev/null \
  || fail "campaign load"
done_=
for _ in $(seq 600); do
  st=$("${PODMAN[@]}" exec "$NODE" salvo campaign status container-demo --config /etc/salvo/salvo.toml --json 2>/dev/null || true)
  if python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["done"] else 1)' "$st" 2>/dev/null; then done_=1; break; fi
  sleep 0.2
done
[ -n "$done_" ] || fail "the campaign did not finish: $st"
delivered=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["counts"]["delivered"])' "$st")
sink=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["recipients_delivered"])' "$WORK/sink/sink.json")
[ "$delivered" = "$N" ] || fail "delivered $delivered of $N"
# The sink writes its stats every second.
for _ in $(seq 30); do
  sink=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["recipients_delivered"])' "$WORK/sink/sink.json")
  [ "$sink" = "$N" ] && break
  sleep 0.2
done
[ "$sink" = "$N" ] || fail "the sink counted $sink, the node $delivered"
echo "container-demo: $delivered of $N delivered; the sink counted $sink"
"${PODMAN[@]}" healthcheck run "$NODE" >/dev/null 2>&1 || fail "the image's HEALTHCHECK fails"
echo "container-demo: the image's HEALTHCHECK passes"
t0=$(date +%s.%N)
"${PODMAN[@]}" stop -t 20 "$NODE" >/dev/null
t1=$(date +%s.%N)
rc=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$NODE")
[ "$rc" = 0 ] || fail "the node exited $rc on SIGTERM"
echo "container-demo: SIGTERM: exit 0 after $(python3 -c "print(round($t1 - $t0, 2))") s"
"${PODMAN[@]}" logs "$NODE" 2>&1 | grep -q "SIGTERM" || fail "the node did not log its SIGTERM drain"

# Without the profile: the runtime's default seccomp blocks io_uring.
set +e
err=$("${PODMAN[@]}" run --rm --no-healthcheck --network host "${LIMITS[@]}" "$IMAGE" \
  sink --listen 127.0.0.1:0 2>&1 >/dev/null)
rc=$?
set -e
err=$(grep '^salvo' <<<"$err" || true)   # podman's own warnings aside
[ "$rc" = 1 ] && grep -q "io_uring is unavailable" <<<"$err" && [ "$(grep -c . <<<"$err")" = 1 ] \
  || fail "default profile: exit $rc: $err"
echo "container-demo: without the profile: $err"
echo "container-demo: ok"
