#!/usr/bin/env bash
# Regenerate resctrl_pipeline/nri/nri_pb2.py and nri_pb2.pyi from nri.proto.
#
# The generated module is committed, so running the pipeline needs only the protobuf
# runtime; this script needs grpcio-tools (it ships protoc as a Python module).
# Usage: scripts/gen_nri_proto.sh [python]   (default: .venv/bin/python, else python3)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-}
if [ -z "$py" ]; then
  if [ -x "$top/.venv/bin/python" ]; then py="$top/.venv/bin/python"; else py=python3; fi
fi
cd "$top"
"$py" -m grpc_tools.protoc \
  --proto_path=resctrl_pipeline/nri \
  --python_out=resctrl_pipeline/nri \
  --pyi_out=resctrl_pipeline/nri \
  resctrl_pipeline/nri/nri.proto
# protoc's stub leaves Mapping unparameterised; keep the rest of the stub strict.
stub=resctrl_pipeline/nri/nri_pb2.pyi
{ echo '# mypy: disable-error-code="type-arg"'; cat "$stub"; } > "$stub.tmp" && mv "$stub.tmp" "$stub"
echo "generated resctrl_pipeline/nri/nri_pb2.py and nri_pb2.pyi with $("$py" -m grpc_tools.protoc --version)"
