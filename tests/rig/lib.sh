# Shared settings for the rig scripts (sourced, not executed).
#
# Everything big (Debian packages, kernel tree and builds, QEMU, images, logs)
# lives in the cache root B, never in the repository.
B=${RIG_BUILD:-$HOME/.cache/vmsi-rig}
mkdir -p "$B/debs"

# rig_say MSG: progress lines go to stderr so that stdout of helper scripts
# can carry results (paths) to the caller.
rig_say() { printf 'rig: %s\n' "$*" >&2; }

# A private apt view of Debian trixie, trixie-backports and sid (amd64 + arm64).
# It is only used for 'apt-get download' + 'dpkg -x' into folders under $B;
# the host's own apt configuration and installed packages are never touched.
APT_DIR=$B/apt
APT_O=(-oDir::Etc::SourceList="$APT_DIR/sources.list" -oDir::Etc::SourceParts=/dev/null
       -oDir::State::Lists="$APT_DIR/lists" -oDir::Cache="$APT_DIR/cache"
       -oAPT::Architectures::=amd64 -oAPT::Architectures::=arm64
       -oAPT::Sandbox::User=root)  # files live under $B, which _apt may not reach

# The Debian mirror this machine is already configured with (first non-security
# URI); no registry host name is written down anywhere in the rig.
debian_mirror() {
  awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null
}

apt_ready() {
  ls "$APT_DIR"/lists/*_sid_*Packages* >/dev/null 2>&1 && return 0
  local m; m=$(debian_mirror)
  [ -n "$m" ] || { rig_say "no Debian mirror found in /etc/apt/sources.list.d/*.sources"; return 1; }
  mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  printf 'deb %s %s main\n' "$m" trixie "$m" trixie-backports "$m" sid > "$APT_DIR/sources.list"
  rig_say "apt: private view of trixie, trixie-backports, sid from $m"
  apt-get "${APT_O[@]}" update -qq >/dev/null
}

# rig_download DIR PKG/SUITE...: fetch .debs into DIR (a cache, kept across runs).
# apt's chatter goes to stderr, so callers can use our stdout.
rig_download() {
  local dir=$1; shift
  apt_ready
  mkdir -p "$dir"
  (cd "$dir" && apt-get "${APT_O[@]}" download "$@" 2>&1 | grep -v -e '^Get:' -e '^Fetched' >&2) || true
}

# rig_deb DIR GLOB PKG/SUITE: path of a cached .deb matching GLOB, downloading it first if absent.
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
