#!/bin/bash
# Build the guest's initramfs: Debian's static arm64 busybox, guest/init, and
# the test executables listed in MANIFEST (lines "NAME<TAB>PATH", from cross.sh).
#
#   usage: tests/rig/initramfs.sh MANIFEST OUT.cpio.gz
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"
MANIFEST=$1 OUT=$2

deb=$(rig_deb "$B/debs" 'busybox-static_*_arm64.deb' busybox-static:arm64/sid)
# next to OUT, so that rig runs with their own RIG_RUN work dirs never share it
R=$(dirname "$OUT")/initramfs-root
rm -rf "$R"; mkdir -p "$R"/{bin,dev,proc,sys,tmp,tests}
dpkg-deb --fsys-tarfile "$deb" | tar -x -O ./usr/bin/busybox > "$R/bin/busybox"
chmod 755 "$R/bin/busybox"
install -m 755 "$HERE/guest/init" "$R/init"
while IFS=$'\t' read -r name path; do
  # a non-static or non-arm64 executable would fail in the guest in a confusing way
  file -b "$path" | grep -q 'ARM aarch64.*static' ||
    { rig_say "initramfs: $path is not a static aarch64 executable: $(file -b "$path")"; exit 1; }
  cp "$path" "$R/tests/$name"
done < "$MANIFEST"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -6) > "$OUT"
