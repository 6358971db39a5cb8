#!/usr/bin/env bash
# Builds the Salvo container image with podman from this repository alone:
#   deploy/build-image.sh [TAG]      (default TAG: localhost/salvo:latest)
# The base is a Debian 12 root file system made here with debootstrap and
# imported as $SALVO_BASE_IMAGE (default localhost/salvo-debian:bookworm) when
# it does not exist yet: no image registry is needed, only Debian's package
# mirror ($SALVO_DEBIAN_MIRROR, default http://deb.debian.org/debian).
# The build context is the repository's files (git ls-files: tracked and
# untracked, ignored ones left out), so a local build/ never enters the image.
# Needs root (debootstrap, podman with runc). SALVO_JOBS: compile jobs (2).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TAG=${1:-localhost/salvo:latest}
BASE=${SALVO_BASE_IMAGE:-localhost/salvo-debian:bookworm}
MIRROR=${SALVO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
JOBS=${SALVO_JOBS:-2}
PODMAN=(podman --runtime runc)

for tool in podman runc; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is not installed (apt-get install podman runc)" >&2; exit 1; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ! "${PODMAN[@]}" image exists "$BASE"; then
  command -v debootstrap >/dev/null || { echo "build-image: debootstrap is not installed" >&2; exit 1; }
  echo "build-image: making the base image $BASE with debootstrap (bookworm, $MIRROR)"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" \
    >"$WORK/rootfs/etc/apt/sources.list"
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import --change 'ENV LANG=C.UTF-8' - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
fi

mkdir "$WORK/context"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) \
  | tar -C "$WORK/context" -xf -
echo "build-image: podman build -t $TAG (base $BASE, $JOBS jobs)"
# Explicit limits: runc cannot raise them above this shell's (and here fails
# to set nproc even at the shell's own value), so: open files as this shell,
# 4096 processes (plenty for a compiler or for salvo).
NOFILE=$(ulimit -Hn); NPROC=4096
[ "$NOFILE" = unlimited ] && NOFILE=1048576
# Docker format: the OCI image format has no HEALTHCHECK.
"${PODMAN[@]}" build --format docker --network host --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC" \
  --build-arg "BASE=$BASE" --build-arg "SALVO_JOBS=$JOBS" \
  -f "$WORK/context/deploy/Containerfile" -t "$TAG" "$WORK/context"
echo "build-image: built $TAG"
