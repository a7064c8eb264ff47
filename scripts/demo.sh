#!/usr/bin/env bash
# The README's first command: set up everything (the plot extra included, so that
# `report --plot` works afterwards), then run the pipeline against an emulated node and
# print a per-pod summary. Arguments go to `resctrl-pipeline demo`; relative paths in
# them (--output) are relative to the directory you run this from.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
"$repo/scripts/setup.sh"
exec "$repo/.venv/bin/resctrl-pipeline" demo "$@"
