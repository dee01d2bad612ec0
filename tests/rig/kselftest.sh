#!/bin/bash
# iommufd's own kernel selftest (tools/testing/selftests/iommu/iommufd.c, which drives the
# IOMMUFD_TEST mock the rig kernels build in) on the stock and on the per-vector kernel.
# The per-vector patches change iommufd's reserved-region and MSI paths; no selftest that
# passes on the stock kernel may fail on the patched one, and neither kernel may warn.
#
#   usage: tests/rig/kselftest.sh
#   env:   RIG_BUILD, RIG_RUN (as run.sh), KSELFTEST_TIMEOUT=SECONDS per boot (default 900)
#
# The selftest is built from the kernel source the rig already unpacked, statically for
# aarch64 with Debian's arm64 libcap. Some selftests fail on both kernels because of what
# the rig's minimal config leaves out (hugetlbfs, for one); they are listed, not counted.
# The last line is "N passed, M failed": N selftests pass on the per-vector kernel, M is
# the number of regressions against the stock kernel plus kernel warnings.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"
K=$("$HERE/kernel/build.sh" stock)
K_PV=$("$HERE/kernel/build.sh" per-vector)
"$HERE/qemu.sh"
SRC=$B/src/linux-source-7.2/tools/testing/selftests
W=$B/${RIG_RUN:-run}/kselftest
rm -rf "$W"; mkdir -p "$W/root"/{bin,dev,proc,sys,tmp}

# --- the selftest, static for aarch64 ----------------------------------------------
cap=$(rig_deb "$B/debs" 'libcap-dev_*_arm64.deb' libcap-dev:arm64/trixie)
dpkg -x "$cap" "$W/libcap"
aarch64-linux-gnu-gcc -static -O2 -D_GNU_SOURCE -Wno-unused-function \
  -isystem "$K/uapi/include" -I"$SRC" -I"$SRC/../../include" -I"$W/libcap/usr/include" \
  -o "$W/root/iommufd" "$SRC/iommu/iommufd.c" \
  -L"$W/libcap/usr/lib/aarch64-linux-gnu" -lcap 2> "$W/build.log" ||
  { cat "$W/build.log" >&2; echo "kselftest: FAIL building the iommufd selftest"; exit 1; }

# --- an initramfs that runs it and reports the kernel log's warnings -------------------
bb=$(rig_deb "$B/debs" 'busybox-static_*_arm64.deb' busybox-static:arm64/sid)
dpkg-deb --fsys-tarfile "$bb" | tar -x -O ./usr/bin/busybox > "$W/root/bin/busybox"
chmod 755 "$W/root/bin/busybox"
cat > "$W/root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
echo 1 > /proc/sys/kernel/printk
echo "KST-BEGIN $(uname -r)"
/iommufd 2>&1 | grep -E '^(ok|not ok) [0-9]+ |^# Totals'
echo "KST-WARNINGS $(dmesg | grep -c -E 'WARNING|BUG[: ]|Oops|Call trace')"
dmesg | grep -E 'WARNING|BUG[: ]|Oops|Call trace' | sed 's/^/KST-KWARN /'
echo KST-END
poweroff -f
EOF
chmod 755 "$W/root/init"
(cd "$W/root" && find . | cpio -o -H newc --quiet | gzip -1) > "$W/initramfs.cpio.gz"

# --- one boot per kernel, side by side -----------------------------------------------
boot() {
  timeout --foreground -k 10 "${KSELFTEST_TIMEOUT:-900}" "${QEMU[@]}" \
    -M virt,gic-version=3,its=on,iommu=smmuv3,virtualization=on,acpi=off -cpu max,pauth-impdef=on \
    -m 1G -smp 2 -accel tcg -nographic -nic none -no-reboot -kernel "$1/Image" \
    -initrd "$W/initramfs.cpio.gz" -append "console=ttyAMA0 panic=-1" </dev/null 2>&1 |
    sed 's/\r$//' > "$2" || true
}
t0=$(date +%s)
boot "$K" "$W/stock.log" & boot "$K_PV" "$W/per-vector.log" & wait
rig_say "kselftest: both kernels in $(( $(date +%s) - t0 )) s; logs in $W"

bad=0
for k in stock per-vector; do
  log=$W/$k.log
  grep -q '^KST-END' "$log" || { echo "kselftest $k: FAIL the guest did not finish (see $log)"; bad=1; }
  # TAP: "ok N name", "ok N name # SKIP why" (not a pass), "not ok N name".
  sed -n '/# SKIP/d; s/^ok [0-9]* //p' "$log" | sort > "$W/$k.pass"
  skipped=$(grep -c '^ok [0-9]* .*# SKIP' "$log" || true)
  sed -n 's/^not ok [0-9]* //p' "$log" | sort > "$W/$k.fail"
  warn=$(sed -n 's/^KST-WARNINGS //p' "$log")
  echo "kselftest $k: $(wc -l < "$W/$k.pass") passed, $(wc -l < "$W/$k.fail") failed, $skipped skipped, ${warn:-?} kernel warnings"
  [ "${warn:-1}" = 0 ] || { grep '^KST-KWARN' "$log" | head -20; bad=1; }
done
[ -s "$W/per-vector.pass" ] || { echo "kselftest: FAIL no selftest passed on the per-vector kernel"; bad=1; }
# A regression: passes on stock, does not pass on per-vector (failed or never reported).
comm -23 "$W/stock.pass" "$W/per-vector.pass" > "$W/regressions"
if [ -s "$W/regressions" ]; then
  echo "kselftest: FAIL selftests that pass on stock but not on the per-vector kernel:"
  sed 's/^/  /' "$W/regressions"
fi
comm -12 "$W/stock.fail" "$W/per-vector.fail" > "$W/both.fail"
if [ -s "$W/both.fail" ]; then
  echo "kselftest: failing on both kernels (the rig's config, not the patches): $(tr '\n' ' ' < "$W/both.fail")"
fi
fails=$(( $(wc -l < "$W/regressions") + bad ))
echo "$(wc -l < "$W/per-vector.pass") passed, $fails failed"
[ "$fails" = 0 ]
