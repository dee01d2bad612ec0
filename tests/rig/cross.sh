#!/bin/bash
# Cross-build a crate's tests for aarch64 Linux as fully static executables.
#
#   usage: tests/rig/cross.sh [CRATE_DIR]   (default: the repository root)
#   stdout: one line per test executable: NAME<TAB>PATH
#           NAME = <package>.lib (the lib's unit tests) or <package>.<test> (tests/<test>.rs)
# env: RIG_RUST=auto|rustup|debian (default auto), RIG_LIBC=musl|gnu (default musl), RIG_BUILD
#
# auto/rustup: 'rustup target add aarch64-unknown-linux-$RIG_LIBC' for the crate's
#   own toolchain (rust-toolchain.toml is honoured).  musl is static by default
#   and rust-lld (shipped with rustc) links it, so no C cross toolchain is
#   involved.  gnu is linked statically (+crt-static) by aarch64-linux-gnu-gcc;
#   it is there to compare libc flavours (e.g. libc::ioctl's request type is
#   c_ulong on glibc but c_int on musl).
# debian: Debian's rustc-web (bookworm-security; it runs on a bookworm host) with
#   its arm64 std, unpacked privately, targeting aarch64-unknown-linux-gnu with
#   +crt-static and the host's aarch64-linux-gnu-gcc as linker.  auto falls back
#   to it when rustup cannot add the target (e.g. no access to the Rust dist server).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$HERE/lib.sh"
CRATE=$(cd "${1:-$HERE/../..}" && pwd)
RIG_RUST=${RIG_RUST:-auto}
cd "$CRATE"

debian_rustc() {
  local RD=$B/rustc-deb rt llvm
  if [ ! -x "$RD/rustc" ]; then
    local m ms
    m=$(debian_mirror); ms=$(debian_security_mirror)
    apt_view "$B/apt-bookworm" "$(printf 'deb [arch=amd64] %s bookworm main\ndeb [arch=amd64,arm64] %s bookworm-security main' "$m" "$ms")"
    # the std and LLVM package names carry the Rust/LLVM versions: ask apt
    rt=$(apt-cache "${APT_O[@]}" depends libstd-rust-web-dev:amd64 | awk '/Depends: libstd-rust-web-[0-9]/{print $2; exit}')
    llvm=$(apt-cache "${APT_O[@]}" depends "$rt" | awk '/Depends: libllvm[0-9]/{print $2; exit}')
    rig_say "cross: downloading Debian rustc-web, ${rt%:amd64}, ${llvm%:amd64}, libstd-rust-web-dev (~130 MB)"
    rm -rf "$B/debs/rustc-web" "$RD"; mkdir -p "$B/debs/rustc-web" "$RD"
    (cd "$B/debs/rustc-web" && apt-get "${APT_O[@]}" download rustc-web "${rt%:amd64}:amd64" \
      "${llvm%:amd64}:amd64" libstd-rust-web-dev:amd64 libstd-rust-web-dev:arm64) 2>&1 |
      { grep -v -e '^Get:' -e '^Fetched' >&2 || true; }
    for d in "$B"/debs/rustc-web/*.deb; do dpkg -x "$d" "$RD"; done
    # rustc finds its sysroot from its own path; it only needs its .so files found
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' \
      "$RD/usr/lib/x86_64-linux-gnu" "$RD/usr/bin/rustc" > "$RD/rustc"
    chmod +x "$RD/rustc"
  fi
  export RUSTC=$RD/rustc
}

RIG_LIBC=${RIG_LIBC:-musl}
T=aarch64-unknown-linux-$RIG_LIBC
if [ "$RIG_RUST" != debian ]; then
  if [ -d "$(rustc --print sysroot)/lib/rustlib/$T/lib" ] ||
     rustup target add "$T" > "$B/rustup-target-add.log" 2>&1; then
    :
  elif [ "$RIG_RUST" = rustup ]; then
    rig_say "cross: rustup target add $T failed: $(head -2 "$B/rustup-target-add.log")"; exit 1
  else
    rig_say "cross: rustup target add $T failed ($(head -1 "$B/rustup-target-add.log"));" \
            "falling back to Debian's rustc-web (gnu, static)"
    RIG_RUST=debian
  fi
fi
if [ "$RIG_RUST" = debian ]; then
  T=aarch64-unknown-linux-gnu   # Debian ships no musl std
  debian_rustc
fi
if [ "$T" = aarch64-unknown-linux-musl ]; then
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
else
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
fi

# A target dir of our own per crate: host builds in ./target are never disturbed.
CARGO_TARGET_DIR=$B/cargo/$(basename "$CRATE")-$(echo "$CRATE" | sha256sum | cut -c1-8)
export CARGO_TARGET_DIR
rig_say "cross: $CRATE -> $T with $(${RUSTC:-rustc} --version)"
json=${RIG_ARTIFACTS:-$CARGO_TARGET_DIR/rig-artifacts.json}
mkdir -p "$CARGO_TARGET_DIR"
# json-render-diagnostics = the JSON artifact stream on stdout, and compiler
# errors rendered for humans on stderr (plain 'json' would hide them).
# --all-features: the guest has KVM (feature kvm) and the per-vector kernel
# implements the proposed uAPI (feature proposed-uapi), so every feature is tested.
cargo test --quiet --no-run --release --workspace --all-features --target "$T" --message-format=json-render-diagnostics > "$json"

# Test executables: integration tests (kind "test") and lib unit tests
# (a lib-like kind with profile.test); not bins, examples or benches.
python3 - "$json" <<'PY'
import json, os, sys
seen = set()
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    kinds = m["target"]["kind"]
    # package name from the package id: "path+file:///dir#name@1.0", "path+file:///name#1.0"
    # or the older "name 1.0 (path+file:///dir)"
    pid = m["package_id"]
    if "#" in pid:
        frag = pid.rsplit("#", 1)[1]
        pkg = frag.split("@")[0] if "@" in frag else os.path.basename(pid.split("#")[0])
    else:
        pkg = pid.split()[0]
    if "test" in kinds:
        name = f'{pkg}.{m["target"]["name"]}'
    elif any(k in ("lib", "rlib", "dylib", "cdylib", "staticlib") for k in kinds):
        name = f"{pkg}.lib"
    else:
        continue
    if name not in seen:
        seen.add(name)
        print(f'{name}\t{m["executable"]}')
PY
