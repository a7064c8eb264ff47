#!/usr/bin/env bash
# The README's first command: set up everything, then run the pipeline against an
# emulated node and print a per-pod summary. Arguments go to `resctrl-pipeline demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/resctrl-pipeline demo "$@"
