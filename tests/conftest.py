"""Shared fixtures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short temporary directory: ipc:// socket paths must stay under 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="rp-", dir="/tmp") as d:
        os.chmod(d, 0o700)
        yield d
