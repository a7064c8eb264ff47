#!/usr/bin/env bash
# Install a real containerd with NRI support for the end-to-end tests (tests/e2e).
#
# Usage: scripts/containerd-setup.sh [1.7|2.x]        (default: 1.7)
#
#   1.7  containerd 1.7 from Debian trixie (NRI 0.6)
#   2.x  containerd 2.x from Debian sid    (NRI 0.8)
#
# What it does, each step skipped when already done (safe to run again):
#   1. adds apt sources for trixie (and sid for 2.x) on the archive URI this machine
#      already uses for its own release, pinned at priority 100 so that nothing else is
#      upgraded from them;
#   2. installs containerd/<suite>, runc and containernetworking-plugins without
#      recommends, with service start-up blocked (no daemon is left running);
#   3. extracts the CRI api.proto from Debian's golang-github-kubernetes-cri-api-dev
#      into the cache directory ($RESCTRL_E2E_CACHE, default
#      /var/cache/resctrl-pipeline/e2e), where the test harness generates its stubs;
#   4. installs grpcio and grpcio-tools into .venv when they are missing.
#
# Needs root on Debian (bookworm or later). Exits non-zero with a message on failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
flavour=${1:-1.7}
cache=${RESCTRL_E2E_CACHE:-/var/cache/resctrl-pipeline/e2e}
tag=resctrl-pipeline-e2e            # prefix of every file this script writes under /etc/apt
export DEBIAN_FRONTEND=noninteractive

die() { echo "containerd-setup: error: $*" >&2; exit 1; }
say() { echo "containerd-setup: $*"; }
# Any unexpected failure names the command, never a silent exit.
trap 'die "unexpected failure (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

case "$flavour" in
  1.7) suites="trixie"; want_suite=trixie; want_major=1.7 ;;
  2.x) suites="trixie sid"; want_suite=sid; want_major=2 ;;
  *) die "unknown flavour '$flavour' (use 1.7 or 2.x)" ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (it installs packages with apt-get)"
for tool in apt-get dpkg-deb dpkg-query; do
  command -v "$tool" >/dev/null || die "$tool is required (Debian or a derivative)"
done
command -v python3 >/dev/null || die "python3 is required"

start=$(date +%s)

# --- 1. apt sources ------------------------------------------------------------------
# The archive URI comes from the machine's own sources: the first enabled 'deb' entry
# whose suite is this release's codename and which carries the main component.
# shellcheck disable=SC1091  # the system's file, read in a subshell
codename=$( . /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || die "cannot read VERSION_CODENAME from /etc/os-release"
archive=$(python3 - "$codename" "$tag" <<'PY'
import glob, re, sys
codename, tag = sys.argv[1], sys.argv[2]

def one_line(path):
    for raw in open(path, encoding="utf-8", errors="replace"):
        line = raw.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)  # drop [options]
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "deb":
            yield parts[1], [parts[2]], parts[3:]

def deb822(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    for stanza in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#"):
                continue
            if raw[:1] in " \t" and key:
                fields[key] += " " + raw.strip()
            elif ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split(), fields.get("components", "").split()

paths = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
for path in paths:
    if tag in path:
        continue
    try:
        if path.endswith(".sources"):
            entries = list(deb822(path))
        elif path.endswith(".list"):
            entries = list(one_line(path))
        else:
            continue
    except OSError:
        continue
    for uri, suites, components in entries:
        if codename in suites and "main" in components and re.fullmatch(r"[A-Za-z0-9+.:/_~%@-]+", uri) \
                and not uri.startswith("cdrom:"):
            print(uri)
            sys.exit(0)
sys.exit(1)
PY
) || die "no apt source for '$codename main' found in /etc/apt/sources.list{,.d}; cannot tell which archive to use"
say "archive: $archive (from this machine's '$codename' source)"

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
opts=""
[ -f "$keyring" ] && opts="[signed-by=$keyring] "

changed=0
write_if_changed() {  # path content
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then
    printf '%s\n' "$2" > "$1.tmp" && mv "$1.tmp" "$1"
    changed=1
  fi
}
src_file=/etc/apt/sources.list.d/$tag.list
pref_file=/etc/apt/preferences.d/$tag
src="# Added by resctrl-pipeline scripts/containerd-setup.sh (e2e tests): containerd with NRI."
pref="# Added by resctrl-pipeline scripts/containerd-setup.sh: never upgrade anything else from here."
for s in $suites; do
  # The machine's own release is already a source, and must not be pinned down.
  [ "$s" = "$codename" ] && continue
  src+=$'\n'"deb ${opts}${archive} $s main"
  pref+=$'\n\n'"Package: *"$'\n'"Pin: release n=$s"$'\n'"Pin-Priority: 100"
done
write_if_changed "$src_file" "$src"
write_if_changed "$pref_file" "$pref"

lists_missing() {  # any suite of ours (or this release) without a downloaded index?
  local s
  for s in $suites "$codename"; do
    compgen -G "/var/lib/apt/lists/*_dists_${s}_main_binary-*_Packages*" >/dev/null || return 0
  done
  return 1
}
if [ "$changed" = 1 ] || lists_missing; then
  if compgen -G "/var/lib/apt/lists/*_dists_${codename}_main_binary-*_Packages*" >/dev/null; then
    say "apt-get update (only the added suites: $suites)"
    apt-get update -qq -o Dir::Etc::sourcelist="$src_file" -o Dir::Etc::sourceparts=- \
      -o APT::Get::List-Cleanup=0 || die "apt-get update of $src_file failed"
  else
    say "apt-get update"
    apt-get update -qq || die "apt-get update failed"
  fi
fi

# --- 2. packages ---------------------------------------------------------------------
installed_version() {  # prints nothing when the package is not installed
  { dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null || true; } \
    | awk '$1 == "ii" { print $2 }'
}
cv=$(installed_version containerd)
need_install=0
case "$cv" in
  "$want_major".*) ;;
  *) need_install=1 ;;
esac
for p in runc containernetworking-plugins; do
  [ -n "$(installed_version "$p")" ] || need_install=1
done
if [ "$need_install" = 1 ]; then
  say "installing containerd/$want_suite runc containernetworking-plugins${cv:+ (replacing containerd $cv)}"
  # Block service start-up during the installation (Debian's policy-rc.d protocol);
  # only when no policy is in place already, and removed again on exit.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from resctrl-pipeline containerd-setup.sh\nexit 101\n' > "$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  before=$(pgrep -x containerd || true)
  log=$(mktemp /tmp/containerd-setup-apt.XXXXXX)
  if ! apt-get install -y -q --no-install-recommends --allow-downgrades \
      "containerd/$want_suite" runc containernetworking-plugins >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "apt-get install of containerd/$want_suite runc containernetworking-plugins failed (log: $log)"
  fi
  rm -f "$log"
  # Whatever the package scripts did, leave no daemon of theirs running.
  for pid in $(pgrep -x containerd || true); do
    case " $before " in *" $pid "*) ;; *) say "stopping containerd pid $pid started by the package"; kill "$pid" || true ;; esac
  done
fi
cv=$(installed_version containerd)
case "$cv" in
  "$want_major".*) ;;
  *) die "containerd $want_major.* wanted, but '$cv' is installed" ;;
esac
for tool in containerd ctr runc; do
  command -v "$tool" >/dev/null || die "$tool is missing from PATH after the installation"
done
[ -x /usr/lib/cni/host-local ] || die "CNI plugins missing in /usr/lib/cni"
say "containerd $cv, runc $(installed_version runc)"

# --- 3. CRI api.proto ----------------------------------------------------------------
proto_rel=usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto
proto_dir=$cache/cri-api
if [ ! -s "$proto_dir/api.proto" ]; then
  say "fetching the CRI api.proto (golang-github-kubernetes-cri-api-dev/trixie)"
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/.download.XXXXXX")
  chown _apt "$work" 2>/dev/null || true  # apt-get download drops privileges to _apt
  (cd "$work" && apt-get download -qq golang-github-kubernetes-cri-api-dev/trixie) \
    || { rm -rf "$work"; die "apt-get download golang-github-kubernetes-cri-api-dev/trixie failed"; }
  deb=$(compgen -G "$work/golang-github-kubernetes-cri-api-dev_*.deb" | head -n1)
  dpkg-deb -x "$deb" "$work/x" || { rm -rf "$work"; die "dpkg-deb -x $deb failed"; }
  [ -s "$work/x/$proto_rel" ] || { rm -rf "$work"; die "$proto_rel not in $deb"; }
  mkdir -p "$proto_dir"
  cp "$work/x/$proto_rel" "$proto_dir/api.proto.tmp"
  dpkg-deb -f "$deb" Version > "$proto_dir/VERSION"
  mv "$proto_dir/api.proto.tmp" "$proto_dir/api.proto"
  rm -rf "$work"
fi
say "CRI api.proto: $proto_dir/api.proto (cri-api $(cat "$proto_dir/VERSION" 2>/dev/null || echo '?'))"

# --- 4. Python packages ---------------------------------------------------------------
if [ ! -x "$top/.venv/bin/python" ]; then
  say "no .venv yet: running scripts/setup.sh --dev"
  "$top/scripts/setup.sh" --dev || die "scripts/setup.sh --dev failed"
fi
if ! "$top/.venv/bin/python" -c 'import grpc, grpc_tools.protoc' 2>/dev/null; then
  say "installing grpcio grpcio-tools into .venv"
  "$top/.venv/bin/python" -m pip install -q grpcio grpcio-tools \
    || die "pip install grpcio grpcio-tools failed"
fi

say "ready in $(( $(date +%s) - start )) s; run: .venv/bin/pytest tests/e2e"
