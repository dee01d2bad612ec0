#!/bin/bash
# Build the rig's arm64 kernel (iommufd + VFIO cdev + SMMUv3 + GICv3 ITS + the
# iommufd selftest mock + fault injection) from Debian's linux-source-7.2,
# cross-compiled with the host's gcc-aarch64-linux-gnu.
#
#   usage: tests/rig/kernel/build.sh [stock|per-vector]  -> prints the kernel's cache dir K on stdout
#
# stock (the default) is Debian's source as it is; per-vector also applies
# patches/*.patch, the reference implementation of the proposed per-vector MSI
# uAPI (patches/README.md).
# K = $RIG_BUILD/kernel/<key>, key = hash of (config-fragment, the patches applied, this script).
# An unchanged kernel is never rebuilt; a changed one gets its own K.  K holds:
#   Image               the kernel
#   uapi/include        sanitized uAPI headers ('make headers')
#   extra-include       iommufd_test.h (the selftest mock's ioctl ABI; not uAPI)
#   config, config-check.txt, build.log, build-time.txt
# env: RIG_BUILD (cache root), JOBS (make -j, default: nproc)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../lib.sh
. "$HERE/../lib.sh"
KVER=7.2
JOBS=${JOBS:-$(nproc)}

# --- cache key ----------------------------------------------------------------
FLAVOUR=${1:-stock}
patches=()
case $FLAVOUR in
  stock) ;;
  per-vector) while IFS= read -r p; do patches+=("$p"); done < <(find "$HERE/patches" -name '*.patch' | sort) ;;
  *) rig_say "kernel: unknown flavour '$FLAVOUR' (stock | per-vector)"; exit 2 ;;
esac
key=$( (cd "$HERE" && sha256sum config-fragment build.sh; for p in "${patches[@]}"; do
          basename "$p"; sha256sum < "$p"; done) | sha256sum | cut -c1-16)
K=$B/kernel/$key
mkdir -p "$K"
# one builder per key; a second concurrent run waits and then finds it done
exec 9>"$K/.lock"; flock 9
if [ -f "$K/done" ]; then echo "$K"; exit 0; fi

# --- pristine source (shared by all keys) ---------------------------------------
SRC=$B/src/linux-source-$KVER
if [ ! -f "$SRC/.rig-extracted" ]; then
  deb=$(rig_deb "$B/debs" "linux-source-${KVER}_*_all.deb" "linux-source-$KVER/sid")
  rig_say "kernel: extracting $(basename "$deb")"
  rm -rf "$SRC" "$B/src/usr"; mkdir -p "$B/src"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$B/src" "./usr/src/linux-source-$KVER.tar.xz"
  tar -xJf "$B/src/usr/src/linux-source-$KVER.tar.xz" -C "$B/src"
  rm -rf "$B/src/usr"
  touch "$SRC/.rig-extracted"
fi

# Patched kernels build from a hard-link copy of the pristine tree: cheap, and
# GNU patch writes each changed file anew, so the pristine tree stays untouched.
TREE=$SRC
if [ ${#patches[@]} -gt 0 ]; then
  TREE=$K/src; rm -rf "$TREE"; cp -al "$SRC" "$TREE"
  for p in "${patches[@]}"; do rig_say "kernel: applying $(basename "$p")"; patch -d "$TREE" -p1 -s < "$p"; done
fi

OUT=$K/build
mkdir -p "$OUT"
MK=(make -C "$TREE" O="$OUT" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-)

# --- config: allnoconfig + fragment, then check wanted vs actual ----------------
"${MK[@]}" KCONFIG_ALLCONFIG="$HERE/config-fragment" allnoconfig > "$K/build.log" 2>&1
# Kconfig silently drops symbols whose dependencies are unmet (or that no longer
# exist), so every line of the fragment is checked, plus symbols we rely on that
# are only ever selected.
want=$(sed -n -e 's/^\(CONFIG_[A-Z0-9_]*=.*\)/\1/p' \
               -e 's/^# \(CONFIG_[A-Z0-9_]*\) is not set/\1=n/p' "$HERE/config-fragment")
want="$want
CONFIG_IOMMU_API=y CONFIG_IRQ_MSI_IOMMU=y CONFIG_ACPI_IORT=y CONFIG_IOMMUFD_DRIVER=y
CONFIG_VFIO_PCI_CORE=y CONFIG_VFIO_PCI_INTX=y CONFIG_VFIO_CONTAINER=n CONFIG_WERROR=n"
bad=0
printf '%-32s %-8s %s\n' SYMBOL WANTED ACTUAL > "$K/config-check.txt"
for kv in $want; do
  k=${kv%%=*} v=${kv#*=}
  a=$(sed -n "s/^$k=//p" "$OUT/.config")
  [ -n "$a" ] || a=n   # "is not set" and absent both mean n
  mark=""; [ "$a" = "$v" ] || { mark="  <-- MISMATCH"; bad=1; }
  printf '%-32s %-8s %s%s\n' "$k" "$v" "$a" "$mark" >> "$K/config-check.txt"
done
if [ $bad = 1 ]; then
  grep MISMATCH "$K/config-check.txt" >&2
  rig_say "kernel: config check FAILED (see $K/config-check.txt)"; exit 1
fi
cp "$OUT/.config" "$K/config"

# --- build --------------------------------------------------------------------
rig_say "kernel: building $key with make -j$JOBS (about 5-6 min on 2 cores; log: $K/build.log)"
t0=$(date +%s)
if ! "${MK[@]}" -j"$JOBS" Image >> "$K/build.log" 2>&1; then
  tail -n 40 "$K/build.log" >&2; rig_say "kernel: build FAILED"; exit 1
fi
t1=$(date +%s)
# sanitized uAPI headers ('headers_install' would need rsync, so copy them ourselves)
"${MK[@]}" headers >> "$K/build.log" 2>&1
rm -rf "$K/uapi"; mkdir -p "$K/uapi"; cp -a "$OUT/usr/include" "$K/uapi/"
mkdir -p "$K/extra-include"
cp "$TREE/drivers/iommu/iommufd/iommufd_test.h" "$K/extra-include/"
cp "$OUT/arch/arm64/boot/Image" "$K/Image"
echo "$(date -u +%FT%TZ) make -j$JOBS Image: $((t1 - t0)) s, Image $(stat -c %s "$K/Image") bytes" | tee "$K/build-time.txt" >&2
touch "$K/done"
echo "$K"
