#!/usr/bin/env bash
# The container image builds with podman and delivers a demo campaign to the
# sink with the shipped seccomp profile (deploy/container-demo.sh, after
# deploy/build-image.sh). Opt-in: building the image compiles Salvo from
# scratch inside it (about 12 minutes on 2 cores), so it runs only with
# SALVO_CONTAINER_TEST=1, and only where podman is installed; otherwise it is
# skipped (exit 77) and says why.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${SALVO_CONTAINER_TEST:-}" != 1 ]; then
  echo "skipped: set SALVO_CONTAINER_TEST=1 to build the image and run it with podman (~12 min)"
  exit 77
fi
for tool in podman runc; do
  command -v "$tool" >/dev/null || { echo "skipped: $tool is not installed (apt-get install podman runc debootstrap)"; exit 77; }
done
TAG=localhost/salvo:test-$$
trap 'podman rmi -f "$TAG" >/dev/null 2>&1 || true' EXIT
"$SRC/deploy/build-image.sh" "$TAG"
"$SRC/deploy/container-demo.sh" "$TAG"
