"""Flush and rotation policies, file names and node-name sanitisation (pure, no I/O)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.sink.directory import OutputDirectory
from resctrl_pipeline.sink.policy import (
    MAX_NODE_CHARS,
    FlushPolicy,
    FlushReason,
    RotateReason,
    RotationPolicy,
    check_prefix,
    file_name,
    final_name_of,
    journal_name,
    leftover_pattern,
    partial_name,
    sanitize_node,
)

SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


# --- flush policy ---------------------------------------------------------------------


def test_flush_by_rows_bytes_and_interval() -> None:
    p = FlushPolicy(interval=10.0, max_rows=100, max_bytes=1000)
    assert p.reason(0, 0, None, 1e9) is None
    assert p.reason(99, 999, 0.0, 9.999) is None
    assert p.reason(100, 0, 0.0, 0.0) is FlushReason.ROWS
    assert p.reason(150, 0, 0.0, 0.0) is FlushReason.ROWS  # one big batch overshoots
    assert p.reason(1, 1000, 0.0, 0.0) is FlushReason.BYTES
    assert p.reason(1, 10**7, 0.0, 0.0) is FlushReason.BYTES  # one huge batch overshoots
    assert p.reason(0, 0, 0.0, 1e9) is None  # an empty buffer is never due: no empty row group
    assert p.reason(1, 1, 5.0, 15.0) is FlushReason.INTERVAL
    assert p.reason(1, 1, 5.0, 14.999) is None
    assert p.reason(1, 1, 5.0, 100.0) is FlushReason.INTERVAL  # a late tick still flushes


def test_smallest_flush_limits_are_valid() -> None:
    p = FlushPolicy(interval=0.001, max_rows=1, max_bytes=1)
    assert p.reason(1, 0, 0.0, 0.0) is FlushReason.ROWS


def test_flush_deadline_follows_the_oldest_row() -> None:
    p = FlushPolicy(interval=10.0, max_rows=100, max_bytes=1000)
    assert p.deadline(None) is None
    assert p.deadline(3.5) == 13.5


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"interval": 0.0, "max_rows": 1, "max_bytes": 1}, "output.flush_interval"),
        ({"interval": 1.0, "max_rows": 0, "max_bytes": 1}, "output.flush_rows"),
        ({"interval": 1.0, "max_rows": 1, "max_bytes": -1}, "output.flush_bytes"),
        ({"interval": -1.0, "max_rows": 1, "max_bytes": 1}, "output.flush_interval"),
        ({"interval": 1.0, "max_rows": -5, "max_bytes": 1}, "output.flush_rows"),
        ({"interval": 1.0, "max_rows": 1, "max_bytes": 0}, "output.flush_bytes"),
    ],
)
def test_flush_policy_rejects_nonsense(kwargs: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        FlushPolicy(**kwargs)  # type: ignore[arg-type]
    assert exc.value.key == key


# --- rotation policy ------------------------------------------------------------------


def test_rotation_by_size_and_age_only_with_a_file() -> None:
    p = RotationPolicy(max_bytes=1000, interval=3600.0)
    assert p.reason(10**9, None, 1e9) is None  # no file, nothing to rotate
    assert p.reason(999, 0.0, 3599.9) is None
    assert p.reason(1000, 0.0, 1.0) is RotateReason.SIZE
    assert p.reason(10**7, 0.0, 1.0) is RotateReason.SIZE  # a row group overshoots the limit
    assert p.reason(0, 100.0, 3700.0) is RotateReason.AGE
    assert p.reason(0, 100.0, 86400.0) is RotateReason.AGE  # checked late, still due
    assert p.deadline(None) is None
    assert p.deadline(100.0) == 3700.0


def test_rotation_policy_rejects_nonsense() -> None:
    with pytest.raises(ConfigError):
        RotationPolicy(max_bytes=0, interval=1.0)
    with pytest.raises(ConfigError):
        RotationPolicy(max_bytes=1, interval=0.0)
    with pytest.raises(ConfigError):
        RotationPolicy(max_bytes=1, interval=-60.0)
    assert RotationPolicy(max_bytes=1, interval=0.5).interval == 0.5  # sub-second is valid
    with pytest.raises(ConfigError):
        RotationPolicy(max_bytes=-1, interval=60.0)


# --- names ----------------------------------------------------------------------------


def test_file_name_format() -> None:
    name = file_name("resctrl-occupancy-", "node-1", 1_700_000_000.9, "0a1b2c3d")
    assert name == "resctrl-occupancy-node-1-20231114T221320Z-0a1b2c3d.parquet"
    assert partial_name(name) == f".{name}.partial"
    assert journal_name(name) == f".{name}.journal"
    assert final_name_of(partial_name(name)) == name
    assert final_name_of(journal_name(name)) == name
    assert final_name_of(name) is None
    assert final_name_of(".x.parquet.tmp") is None
    assert final_name_of("..parquet.journal") is None  # no final name left
    assert final_name_of(".a/b.parquet.partial") is None  # a path, not a name in the directory
    dashed = file_name("", "-n", 0.0, "0a1b2c3d")  # an empty prefix and a node "-n"
    assert final_name_of(journal_name(dashed)) == dashed
    mine = leftover_pattern("resctrl-occupancy-", "node/1")
    assert mine.fullmatch(journal_name(file_name("resctrl-occupancy-", "node/1", 0.0, "0a1b2c3d")))
    assert mine.fullmatch(partial_name(name.replace("node-1", "node_1")))
    for other in (
        journal_name(file_name("resctrl-occupancy-", "node/1-b", 0.0, "0a1b2c3d")),
        journal_name(file_name("other-", "node/1", 0.0, "0a1b2c3d")),
        file_name("resctrl-occupancy-", "node/1", 0.0, "0a1b2c3d"),
        journal_name(file_name("resctrl-occupancy-", "node/1", 0.0, "0a1b2c3d")) + ".x",
    ):
        assert not mine.fullmatch(other), other


@pytest.mark.parametrize("token", ["0A1B2C3D", "0a1b2c3", "0a1b2c3d4", "../x/yz", "zzzzzzzz"])
def test_file_name_rejects_bad_tokens(token: str) -> None:
    with pytest.raises(ValueError):
        file_name("p-", "n", 0.0, token)


@pytest.mark.parametrize("prefix", [".hidden-", "a/b-", "x\0", "é-", "p" * 65])
def test_bad_prefixes_are_config_errors(prefix: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check_prefix(prefix)
    assert exc.value.key == "output.prefix"


HOSTILE = [
    "../../etc/passwd",
    "/absolute",
    "..",
    ".",
    ".hidden",
    "",
    "a/b\\c",
    "nul\0byte",
    "new\nline",
    "nöde-ünïcode",
    "spaces in name",
    "x" * 1000,
    "-rf",
    "*.parquet",
    "$(reboot)",
]


@pytest.mark.parametrize("node", HOSTILE)
def test_hostile_node_names_stay_inside_the_directory(node: str, tmp_path: Path) -> None:
    safe = sanitize_node(node)
    assert SAFE.fullmatch(safe), safe
    assert len(safe) <= MAX_NODE_CHARS
    name = file_name("resctrl-occupancy-", node, 0.0, "deadbeef")
    assert os.path.basename(name) == name
    assert not name.startswith(".")
    path = Path(OutputDirectory(tmp_path).path(name))
    assert path.parent == tmp_path
    assert name == f"resctrl-occupancy-{safe}-19700101T000000Z-deadbeef.parquet"


def test_sanitising_keeps_safe_names_and_replaces_the_rest() -> None:
    assert sanitize_node("worker-1.example.com") == "worker-1.example.com"
    assert sanitize_node("a/b") == "a_b"
    assert sanitize_node("..") == "__"
    assert sanitize_node("...ab") == "___ab"  # each leading dot becomes one "_"
    assert sanitize_node(".hidden") == "_hidden"
    assert sanitize_node("") == "node"
    assert sanitize_node("n" * 100) == "n" * 64


def test_prefix_of_the_longest_allowed_length_is_accepted() -> None:
    assert check_prefix("p" * 64) == "p" * 64


@given(st.text(max_size=300))
def test_any_node_name_gives_a_plain_safe_file_name(node: str) -> None:
    safe = sanitize_node(node)
    assert SAFE.fullmatch(safe)
    assert len(safe) <= MAX_NODE_CHARS
    name = file_name("p-", node, 0.0, "00000000")
    assert "/" not in name and "\0" not in name and not name.startswith(".")
    assert len(name.encode()) < 255


def test_output_directory_refuses_non_plain_names(tmp_path: Path) -> None:
    d = OutputDirectory(tmp_path)
    for bad in ("", ".", "..", "a/b", "../x", "x\0y"):
        with pytest.raises(ValueError):
            d.path(bad)
