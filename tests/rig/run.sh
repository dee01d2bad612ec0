#!/bin/bash
# vmsi real-kernel test rig: run the project's tests inside an arm64 guest
# (our own Linux 7.2 build, QEMU 11 TCG 'virt' with GICv3 ITS + SMMUv3, an 'edu'
# device with MSI and two nvme devices with 65 MSI-X vectors each).
#
#   usage: tests/rig/run.sh
#   env:   MODES="dt acpi-canwbs per-vector"  modes to boot (default all three)
#          RIG_BUILD=DIR           cache root (default ~/.cache/vmsi-rig)
#          RIG_RUN=NAME            private work dir under RIG_BUILD (default run), for parallel runs
#          RIG_CRATE=DIR           crate/workspace whose tests run (default: this repository)
#          RIG_FILTER=A,B          only tests whose names contain A or B (libtest filters)
#          TEST_TIMEOUT=SECONDS    per test executable, in the guest (default 300)
#          BOOT_TIMEOUT=SECONDS    per boot (default 180 + TEST_TIMEOUT per executable)
#          RIG_RUST=auto|rustup|debian, RIG_LIBC=musl|gnu  how to cross-compile (see cross.sh)
#          RIG_KERNEL_PER_VECTOR=DIR  use DIR/Image as the per-vector kernel instead of building
#                                     one (for kernel development; see kernel/patches/README.md)
#
# Steps: host packages, kernel (kernel/build.sh), QEMU + firmware (qemu.sh),
# tests for aarch64 (cross.sh), initramfs (initramfs.sh), then one boot per mode,
# judged by summarize.py.  Everything built or downloaded is cached in RIG_BUILD.
# The last line is "N passed, M failed"; the exit status is non-zero on any failure.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"
MODES=${MODES:-dt acpi-canwbs per-vector}
CRATE=$(cd "${RIG_CRATE:-$HERE/../..}" && pwd)
TEST_TIMEOUT=${TEST_TIMEOUT:-300}
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
T_ALL=$EPOCHREALTIME
for m in $MODES; do
  case $m in dt|acpi-canwbs|per-vector) ;; *) rig_say "unknown mode '$m' (known: dt acpi-canwbs per-vector)"; exit 2 ;; esac
done

# --- 1. host packages: the cross compiler and kernel build tools ----------------
pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross flex bison bc cpio make xz-utils file)
command -v python3 >/dev/null || pkgs+=(python3-minimal)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1 || ! command -v python3 >/dev/null; then
  rig_say "installing host packages: ${pkgs[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
command -v cargo >/dev/null || { rig_say "cargo (rustup) is required"; exit 1; }

# --- 2. kernel, QEMU, tests, initramfs --------------------------------------------
# Modes dt and acpi-canwbs boot the stock kernel; per-vector boots the one with
# kernel/patches applied (only built when that mode runs).
t=$EPOCHREALTIME
K=$("$HERE/kernel/build.sh" stock)
rig_say "kernel: $K ($(since "$t") s)"
K_PV=""
case " $MODES " in *" per-vector "*)
  t=$EPOCHREALTIME
  K_PV=${RIG_KERNEL_PER_VECTOR:-$("$HERE/kernel/build.sh" per-vector)}
  rig_say "kernel (per-vector): $K_PV ($(since "$t") s)" ;;
esac
"$HERE/qemu.sh"
# RIG_RUN names a private work directory (images, initramfs, logs), so that several rig
# runs can share one cache (kernel, QEMU, cargo) at the same time.
W=$B/${RIG_RUN:-run}; mkdir -p "$W" "$W/logs"
t=$EPOCHREALTIME
RIG_ARTIFACTS=$W/artifacts.json "$HERE/cross.sh" "$CRATE" > "$W/manifest.all" || { echo "rig: FAIL building the tests for aarch64"; exit 1; }
# host-only.txt names test executables that check the build host rather than the kernel.
awk -F'\t' 'NR == FNR { if ($0 !~ /^#/ && NF) skip[$1]; next } !($1 in skip)' \
  "$HERE/host-only.txt" "$W/manifest.all" > "$W/manifest.tsv"
n_exec=$(wc -l < "$W/manifest.tsv")
rig_say "cross: $n_exec test executables ($(since "$t") s): $(cut -f1 "$W/manifest.tsv" | tr '\n' ' ')"
"$HERE/initramfs.sh" "$W/manifest.tsv" "$W/initramfs.cpio.gz"
BOOT_TIMEOUT=${BOOT_TIMEOUT:-$((180 + n_exec * TEST_TIMEOUT))}

# --- 3. the guest -------------------------------------------------------------------
# boot LOG FIRMWARE INITRD APPEND [IMAGE]: one QEMU run, console (minus CRs) into LOG.
# FIRMWARE is dt (device tree, no UEFI) or acpi (UEFI + ACPI tables).
# virtualization=on: the guest kernel runs at EL2, so it has KVM (the launcher's VM).
boot() {
  local log=$1 fw=$2 initrd=$3 append=$4 image=${5:-$K/Image} i rc=0
  local mach=virt,gic-version=3,its=on,iommu=smmuv3,virtualization=on extra=()
  if [ "$fw" = acpi ]; then
    mach+=,acpi=on; extra=(-bios "$EFI_FD"); append="acpi=force $append"
  else
    mach+=,acpi=off
  fi
  # two nvme controllers, so that tests can put two devices on one iommufd;
  # each gets a fresh 16 MiB scratch disk.  msix_qsize = MSI-X vectors (65 is
  # also QEMU 11's default; set explicitly because tests rely on it).
  for i in 0 1; do
    rm -f "$W/nvme$i.img"; truncate -s 16M "$W/nvme$i.img"
    extra+=(-drive "if=none,id=nvme$i,file=$W/nvme$i.img,format=raw"
            -device "nvme,serial=vmsi-rig-$i,drive=nvme$i,msix_qsize=65")
  done
  # -nic none: the default virtio NIC would want an option ROM QEMU's package lacks.
  # timeout --foreground: QEMU stays in our process group, so Ctrl-C stops it too.
  # sed -u: the log can be followed live (tail -f) while the guest runs.
  timeout --foreground -k 10 "$BOOT_TIMEOUT" "${QEMU[@]}" -M "$mach" -cpu max,pauth-impdef=on \
    -m 1G -smp 2 -accel tcg -nographic -nic none -no-reboot -kernel "$image" -initrd "$initrd" \
    -append "console=ttyAMA0 panic=-1 vmsi.test_timeout=$TEST_TIMEOUT ${RIG_FILTER:+vmsi.filter=$RIG_FILTER }$append" \
    -device edu "${extra[@]}" </dev/null 2>&1 | sed -u 's/\r$//' > "$log" || rc=$?
  [ "$rc" = 0 ] || rig_say "qemu exited with status $rc$([ "$rc" = 124 ] && echo " (timeout after $BOOT_TIMEOUT s)")"
}

# acpi-canwbs: QEMU's own IORT, with the CANWBS flag set in the root complex node,
# replaces the firmware's through the kernel's ACPI table upgrade (an uncompressed
# cpio with kernel/firmware/acpi/IORT.aml in front of the initramfs).  The IORT
# depends only on QEMU and its machine options, so it is captured once per QEMU.
canwbs_initrd() {
  local key dir log
  key=$( ("${QEMU[@]}" --version | head -1; sha256sum < "$EFI_FD"; sha256sum < "$HERE/iort-canwbs.py") |
         sha256sum | cut -c1-16)
  dir=$B/iort/$key
  if [ ! -f "$dir/kernel/firmware/acpi/IORT.aml" ]; then
    log=$W/logs/iort-capture.log
    rig_say "acpi-canwbs: capturing QEMU's IORT (log: $log)"
    boot "$log" acpi "$W/initramfs.cpio.gz" "vmsi.mode=iort-capture vmsi.dump_iort=1 vmsi.run_tests=0"
    mkdir -p "$dir/kernel/firmware/acpi"
    python3 "$HERE/iort-canwbs.py" "$log" "$dir/kernel/firmware/acpi/IORT.aml" >&2
  fi
  (cd "$dir" && find kernel | cpio -o -H newc --quiet) > "$W/iort.cpio"
  cat "$W/iort.cpio" "$W/initramfs.cpio.gz" > "$W/initramfs-canwbs.cpio"
  echo "$W/initramfs-canwbs.cpio"
}

total_p=0 total_f=0 bad=0
for mode in $MODES; do
  log=$W/logs/$mode.log
  # per-vector is acpi-canwbs (so nested works) on the patched kernel; its tests
  # see VMSI_RIG_MODE=acpi-canwbs and VMSI_RIG_KERNEL=per-vector.
  image=$K/Image kernel=stock
  case $mode in
    dt)          fw=dt   initrd=$W/initramfs.cpio.gz ;;
    acpi-canwbs) fw=acpi initrd=$(canwbs_initrd) ;;
    per-vector)  fw=acpi initrd=$(canwbs_initrd) image=$K_PV/Image kernel=per-vector ;;
  esac
  t=$EPOCHREALTIME
  boot "$log" "$fw" "$initrd" "vmsi.mode=${mode/per-vector/acpi-canwbs} vmsi.kernel=$kernel" "$image"
  rig_say "$mode: booted and ran in $(since "$t") s; console log: $log"
  if [ "$fw" = acpi ] && ! grep -q 'ACPI: Table Upgrade: override \[IORT' "$log"; then
    echo "rig $mode: FAIL the patched IORT was not loaded"; bad=1
  fi
  python3 "$HERE/summarize.py" "$mode" "$log" "$n_exec" "$W/counts" || bad=1
  read -r p f < "$W/counts"
  total_p=$((total_p + p)) total_f=$((total_f + f))
done
rig_say "whole run: $(since "$T_ALL") s"
echo "$total_p passed, $total_f failed"
exit "$bad"
