#!/usr/bin/env bash
# Installs exactly the Debian 12 packages Salvo needs to build, test and run.
# Idempotent: packages already present are left alone. Needs root (apt-get).
set -euo pipefail

BUILD_PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  liburing-dev libssl-dev libc-ares-dev librocksdb-dev prometheus-cpp-dev libcivetweb-dev
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libtomlplusplus-dev libfmt-dev nlohmann-json3-dev
  libpsl-dev publicsuffix libidn2-dev libhiredis-dev libre2-dev libgmime-3.0-dev
  libjemalloc2
)
# Real peers the test suite talks to: Postfix (smtpd, smtp-source, smtp-sink;
# Cyrus SASL for a smtpd that requires AUTH: saslpasswd2 and the PLAIN/LOGIN
# plugins), swaks, aiosmtpd, dkimpy, OpenDKIM, unbound, clang for the fuzzers,
# openssl, Prometheus (promtool, and a real server scraping `salvo run` in the
# tests).
TEST_PKGS=(
  postfix sasl2-bin libsasl2-modules swaks libnet-ssleay-perl python3 python3-aiosmtpd python3-dkim
  opendkim opendkim-tools unbound dnsutils openssl clang-14 libclang-rt-14-dev
  clang-format procps python3-seccomp prometheus python3-yaml redis-server
)

mode="${1:-all}"   # build | test | all
case "$mode" in
  build) pkgs=("${BUILD_PKGS[@]}") ;;
  test|all) pkgs=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  *) echo "usage: $0 [build|test|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#pkgs[@]} packages already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "bootstrap: these Debian packages are missing and installing them needs root:" >&2
    echo "  ${missing[*]}" >&2
    echo "bootstrap: run this script as root (or install sudo), e.g.: su -c '$0 $mode'" >&2
    exit 1
  fi
else
  SUDO=
fi

echo "bootstrap: installing ${#missing[@]} package(s): ${missing[*]}"
# Postfix must never start a system instance listening on port 25: preseed
# 'No configuration'; the tests run private instances on loopback ports.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts unbound/opendkim/prometheus as system services where an init
# runs; the tests start their own instances on loopback ports, so stop any
# system ones.
for svc in unbound opendkim postfix prometheus redis-server; do
  $SUDO systemctl stop "$svc" >/dev/null 2>&1 || true
done
echo "bootstrap: done"
