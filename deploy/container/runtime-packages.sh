#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries BINARY loads (one
# line, space-separated), so the image's runtime stage installs only those.
set -euo pipefail
BIN=${1:?usage: $0 BINARY}
libs=$(ldd "$BIN" | awk '/=> \//{print $3}')
[ -n "$libs" ] || { echo "$0: ldd found no libraries in $BIN" >&2; exit 1; }
pkgs=()
for lib in $libs; do
  real=$(readlink -f "$lib")
  # dpkg knows the path the package shipped: try the resolved file, then the link.
  pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null) \
    || { echo "$0: no Debian package holds $lib" >&2; exit 1; }
  pkgs+=("${pkg%%:*}")
done
printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' '
echo
