#!/bin/bash
# Fetch QEMU 11 (qemu-system-aarch64) and the arm64 UEFI firmware into the cache.
#
# QEMU 11 is in trixie-backports, but it cannot be apt-installed on an older host
# (it needs trixie's glibc and libs).  So we download it together with trixie's
# runtime libraries (glibc included) and unpack everything into $QR; lib.sh's
# QEMU array starts it through that private dynamic loader.  The UEFI firmware
# (for the ACPI modes) is sid's qemu-efi-aarch64.  Nothing is installed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"

if [ ! -f "$QR/.done" ]; then
  pk=(qemu-system-arm/trixie-backports qemu-system-common/trixie-backports
      qemu-system-data/trixie-backports)
  # the run-time closure of qemu-system-aarch64 on trixie (found with ldd, then by trial)
  for p in libaio1t64 libbpf1 libc6 libcapstone5 libfdt1 libfuse3-4 libglib2.0-0t64 libgmp10 \
     libgnutls30t64 libhogweed6t64 libibverbs1 libjpeg62-turbo libnettle8t64 libnuma1 libpixman-1-0 \
     libpmem1 libpng16-16t64 librdmacm1t64 libsasl2-2 libseccomp2 libslirp0 libudev1 liburing2 \
     libvdeplug2t64 libzstd1 zlib1g libgcc-s1 libp11-kit0 libtasn1-6 libidn2-0 libunistring5 libffi8 \
     libpcre2-8-0 libmount1 libselinux1 libblkid1 libelf1t64 libnl-3-200 libnl-route-3-200 libndctl6 \
     libdaxctl1 libkmod2 libuuid1 libcap2 libsasl2-modules-db libdb5.3t64 liblzma5 libssl3t64 \
     libstdc++6 libatomic1; do pk+=("$p:amd64/trixie"); done
  rig_say "qemu: downloading QEMU 11 (trixie-backports) + trixie runtime libs"
  rm -rf "$B/debs/qemu" "$QR"
  rig_download "$B/debs/qemu" "${pk[@]}"
  for d in "$B"/debs/qemu/*.deb; do dpkg -x "$d" "$QR"; done
  "${QEMU[@]}" --version | head -1 >&2 || {
    rig_say "qemu: does not start; missing libraries:"
    "${QEMU[0]}" --list "${QEMU[@]:1:3}" | grep 'not found' >&2; exit 1; }
  touch "$QR/.done"
fi

if [ ! -f "$EFI_FD" ]; then
  deb=$(rig_deb "$B/debs" 'qemu-efi-aarch64_*_all.deb' qemu-efi-aarch64/sid)
  # only the firmware image; the rest of the package is ~390 MB we never use
  rm -rf "$B/efi"; mkdir -p "$B/efi"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$B/efi" ./usr/share/qemu-efi-aarch64/QEMU_EFI.fd
fi
