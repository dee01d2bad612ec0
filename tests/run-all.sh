#!/bin/bash
# Everything CI runs, and what a contributor runs before sending a change:
#   1. formatting, lints (clippy and rustdoc, -D warnings) and the MSRV build;
#   2. the host tests (unit, property and object tests on Sim) for the whole workspace;
#   3. the rig: the same tests, cross-compiled for aarch64, inside our own Linux 7.2 under
#      QEMU (device-tree mode, ACPI mode with the CANWBS IORT, and that again on the kernel
#      with the per-vector reference patches), see tests/rig/README.md;
#   4. iommufd's own kernel selftest on both rig kernels: the patches regress nothing;
#   5. the uAPI layout check against the headers the rig's kernel builds produced;
#   6. the fuzzing smoke (fuzz/smoke.sh): each cargo-fuzz target's corpus and a short run.
# The last line is "N passed, M failed" over all of it; the exit status is non-zero on any
# failure.  SKIP_RIG=1 runs only the host part (for quick iterations; CI never sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml | head -1)
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
step() { printf '\n== %s\n' "$*"; }
# Sum the "test result: ... N passed; M failed" lines of cargo's output.
count() { awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } } END { print p + 0, f + 0 }' "$@"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked --quiet

step "minimum supported Rust version: $MSRV"
if ! rustup run "$MSRV" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$MSRV" --profile minimal
fi
cargo "+$MSRV" build --workspace --lib --locked

step "host tests (Sim backend)"
cargo test --workspace --all-features --locked 2>&1 | tee "$LOG/host.txt"
read -r host_p host_f < <(count "$LOG/host.txt")

step "fuzzing smoke: every target's seeds and regressions, then a bounded run (fuzz/README.md)"
fuzz/smoke.sh

rig_p=0 rig_f=0
if [ "${SKIP_RIG:-0}" != 1 ]; then
  step "rig: the tests on the real Linux 7.2 kernel under QEMU"
  rig_rc=0
  tests/rig/run.sh 2>&1 | tee "$LOG/rig.txt" || rig_rc=$?
  read -r rig_p rig_f < <(awk '/^[0-9]+ passed, [0-9]+ failed$/ { p = $1; f = $3 } END { print p + 0, f + 0 }' "$LOG/rig.txt")
  [ "$rig_rc" = 0 ] || rig_f=$((rig_f > 0 ? rig_f : 1))

  step "iommufd's kernel selftest on the stock and the per-vector kernel (no regressions)"
  kst_rc=0
  tests/rig/kselftest.sh 2>&1 | tee "$LOG/kselftest.txt" || kst_rc=$?
  read -r kst_p kst_f < <(awk '/^[0-9]+ passed, [0-9]+ failed$/ { p = $1; f = $3 } END { print p + 0, f + 0 }' "$LOG/kselftest.txt")
  [ "$kst_rc" = 0 ] || kst_f=$((kst_f > 0 ? kst_f : 1))
  rig_p=$((rig_p + kst_p)) rig_f=$((rig_f + kst_f))

  step "uAPI layouts against the Linux 7.2 headers, stock and per-vector"
  K=$(tests/rig/kernel/build.sh stock)
  K_PV=$(tests/rig/kernel/build.sh per-vector)
  VMSI_KERNEL_HEADERS=$K/uapi/include VMSI_PER_VECTOR_HEADERS=$K_PV/uapi/include \
    cargo test -p vmsi-sys --all-features --test c_abi --locked -- --include-ignored 2>&1 | tee "$LOG/abi.txt"
  read -r abi_p abi_f < <(count "$LOG/abi.txt")
  host_p=$((host_p + abi_p)) host_f=$((host_f + abi_f))
fi

step "summary"
echo "host: $host_p passed, $host_f failed; rig: $rig_p passed, $rig_f failed"
echo "$((host_p + rig_p)) passed, $((host_f + rig_f)) failed"
[ "$((host_f + rig_f))" = 0 ]
