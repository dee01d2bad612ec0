# shellcheck shell=bash disable=SC2034  # (variables here are used by the sourcing scripts)
# Shared settings for the rig scripts (sourced, not executed).
#
# Everything big (Debian packages, kernel sources and builds, QEMU, images, logs)
# lives under the cache root B, never in the repository.
B=${RIG_BUILD:-$HOME/.cache/vmsi-rig}
mkdir -p "$B/debs"

# Progress goes to stderr, so that helper scripts can return results on stdout.
rig_say() { printf 'rig: %s\n' "$*" >&2; }

# The Debian mirrors this machine is already configured with; no registry host
# name is written down anywhere in the rig.
debian_mirror() {
  awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null
}
debian_security_mirror() {
  awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null
}

# apt_view DIR SOURCES: a private apt view (its own sources.list and lists in DIR),
# used only for 'apt-get download' + 'dpkg -x' into folders under $B.  The host's
# apt configuration and installed packages are never touched.  Sets APT_O.
apt_view() {
  local dir=$1 src=$2
  APT_O=(-oDir::Etc::SourceList="$dir/sources.list" -oDir::Etc::SourceParts=/dev/null
         -oDir::State::Lists="$dir/lists" -oDir::Cache="$dir/cache"
         -oAPT::Architectures::=amd64 -oAPT::Architectures::=arm64
         -oAPT::Sandbox::User=root)   # files live under $B, which _apt may not reach
  if [ ! -f "$dir/.updated" ] || [ "$(cat "$dir/sources.list")" != "$src" ]; then
    [ -n "$src" ] || { rig_say "no Debian mirror in /etc/apt/sources.list.d/*.sources"; return 1; }
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    printf '%s\n' "$src" > "$dir/sources.list"
    rig_say "apt: updating private view $dir"
    apt-get "${APT_O[@]}" update -qq >/dev/null
    touch "$dir/.updated"
  fi
}

# The main view: trixie (QEMU's runtime libs), trixie-backports (QEMU 11),
# sid (kernel source, busybox, UEFI firmware).
rig_view() {
  local m; m=$(debian_mirror)
  apt_view "$B/apt" "${m:+$(printf 'deb %s %s main\n' "$m" trixie "$m" trixie-backports "$m" sid)}"
}

# rig_download DIR PKG[/SUITE]...: fetch .debs into DIR (kept across runs).
# apt's chatter goes to stderr, so callers can use our stdout.
rig_download() {
  local dir=$1; shift
  rig_view
  mkdir -p "$dir"
  (cd "$dir" && apt-get "${APT_O[@]}" download "$@" 2>&1 | grep -v -e '^Get:' -e '^Fetched' >&2) || true
}

# rig_deb DIR GLOB PKG/SUITE: path of a cached .deb matching GLOB, downloaded first if absent.
rig_deb() {
  local dir=$1 glob=$2 spec=$3 f
  f=$(compgen -G "$dir/$glob" | head -1 || true)
  if [ -z "$f" ]; then
    rig_download "$dir" "$spec"
    f=$(compgen -G "$dir/$glob" | head -1 || true)
  fi
  [ -n "$f" ] || { rig_say "could not download $spec"; return 1; }
  echo "$f"
}

# Where qemu.sh unpacks QEMU and the UEFI firmware.
QR=$B/qemu-root
EFI_FD=$B/efi/usr/share/qemu-efi-aarch64/QEMU_EFI.fd
# QEMU from trixie-backports runs on this (older) host through trixie's own
# dynamic loader and libraries, all unpacked in $QR.
QEMU=("$QR/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
      --library-path "$QR/lib/x86_64-linux-gnu:$QR/usr/lib/x86_64-linux-gnu"
      "$QR/usr/bin/qemu-system-aarch64" -L "$QR/usr/share/qemu")
