#!/usr/bin/env bash
# Idempotent set-up shared by demo.sh and test.sh: a virtualenv in .venv with the
# package, and (when root on Debian) the apt packages the emulated node needs.
# Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

want_dev=0
[ "${1:-}" = "--dev" ] && want_dev=1

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if ! command -v fusermount3 >/dev/null 2>&1 || ! ldconfig -p | grep -q libfuse3.so.3; then
    echo "setup: installing fuse3 (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      fuse3 libfuse3-3 >/dev/null
  fi
  # The test suite renders the Kubernetes overlays with kustomize: Debian has it from
  # trixie on (scripts/containerd-setup.sh adds that suite, pinned low; .ci/run runs it
  # first). Without it the test renders with `kubectl kustomize` where kubectl exists.
  if [ "$want_dev" = 1 ] && ! command -v kustomize >/dev/null 2>&1; then
    echo "setup: installing kustomize (apt)"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      kustomize >/dev/null || echo "setup: kustomize unavailable (its test tries kubectl kustomize)" >&2
  fi
  # The metrics tests scrape a running pipeline with a real Prometheus server and
  # lint /metrics with promtool (both in Debian's prometheus package).
  if [ "$want_dev" = 1 ] && ! command -v promtool >/dev/null 2>&1; then
    echo "setup: installing prometheus (apt)"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus >/dev/null || echo "setup: prometheus unavailable; its tests will skip" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# plot: `report --plot`, which the demo suggests at its end.
extras="emulator,plot"
[ "$want_dev" = 1 ] && extras="dev,emulator"
stamp=".venv/.installed-$extras-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing resctrl-pipeline[$extras] into .venv (log: .venv/pip.log)"
  # Quiet on success; the whole log on failure.
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -e ".[$extras]"; } > .venv/pip.log 2>&1; then
    cat .venv/pip.log >&2
    echo "setup: pip install failed (see above)" >&2
    exit 1
  fi
  touch "$stamp"
fi
