"""CRI protobuf and gRPC stubs, generated from Debian's ``api.proto`` at test time.

The upstream file imports gogoproto and sets Go-only file options; protoc cannot
resolve that import, so those lines are removed first. The stubs are generated once
per (cleaned proto, grpc_tools version) into ``<cache>/cri-stubs/<digest>/`` and are
never committed. Generation writes to a temporary sibling directory and renames it,
so concurrent test processes never see half-written modules.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

from .install import HarnessUnavailable

__all__ = ["CriModules", "clean_proto", "load_cri_modules"]

_MODULE: Final = "cri_api"
_GOGO_IMPORT = re.compile(r'^\s*import\s+"github\.com/gogo/protobuf/[^"]*";\s*$', re.MULTILINE)
_GOGO_OPTION = re.compile(r"^\s*option\s+\(gogoproto\.[A-Za-z_]+\)\s*=[^;]*;\s*$", re.MULTILINE)
_GOGO_FIELD_OPTION = re.compile(r"\s*\[\s*\(gogoproto\.[A-Za-z_]+\)\s*=\s*[^\]]*\]")


@dataclass(frozen=True, slots=True)
class CriModules:
    """The loaded modules: ``pb`` (messages, enums) and ``grpc`` (service stubs)."""

    pb: ModuleType
    grpc: ModuleType


_loaded: CriModules | None = None


def clean_proto(text: str) -> str:
    """Remove the gogoproto import and every gogoproto option from ``text``.

    Raises:
        HarnessUnavailable: a gogoproto reference survived (an unknown form).
    """
    text = _GOGO_IMPORT.sub("", text)
    text = _GOGO_OPTION.sub("", text)
    text = _GOGO_FIELD_OPTION.sub("", text)
    if "gogoproto" in text:
        raise HarnessUnavailable("the CRI api.proto uses a gogoproto form this harness can't strip")
    return text


def _generate(proto_text: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gen-", dir=out.parent))
    try:
        (tmp / f"{_MODULE}.proto").write_text(proto_text)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"--proto_path={tmp}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                str(tmp / f"{_MODULE}.proto"),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise HarnessUnavailable(f"protoc failed on the CRI api.proto: {proc.stderr.strip()}")
        try:
            tmp.rename(out)
        except OSError:
            if not (out / f"{_MODULE}_pb2_grpc.py").is_file():
                raise
            # Another process generated the same digest first: use theirs.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise HarnessUnavailable(f"cannot load generated module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the grpc module imports the pb2 module by this name
    spec.loader.exec_module(module)
    return module


def load_cri_modules(proto: Path, cache: Path) -> CriModules:
    """Generate (if needed) and import the CRI stubs; the same objects on every call.

    Raises:
        HarnessUnavailable: grpcio/grpcio-tools missing, or protoc failed.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    try:
        import grpc  # type: ignore[import-untyped]  # noqa: F401
        from grpc_tools import protoc  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as err:
        raise HarnessUnavailable(
            f"grpcio/grpcio-tools missing ({err}): run scripts/containerd-setup.sh "
            "or `.venv/bin/pip install grpcio grpcio-tools`"
        ) from err
    text = clean_proto(proto.read_text())
    tools_version = importlib.metadata.version("grpcio-tools")
    digest = hashlib.sha256(f"{tools_version}\0{text}".encode()).hexdigest()[:16]
    out = cache / "cri-stubs" / digest
    if not (out / f"{_MODULE}_pb2_grpc.py").is_file():
        _generate(text, out)
    pb = _load(f"{_MODULE}_pb2", out / f"{_MODULE}_pb2.py")
    grpc_mod = _load(f"{_MODULE}_pb2_grpc", out / f"{_MODULE}_pb2_grpc.py")
    _loaded = CriModules(pb, grpc_mod)
    return _loaded
