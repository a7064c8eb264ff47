"""Fixtures for the emulator tests (helpers live in :mod:`tests.emulator.support`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

import pytest

from tests.emulator.support import Child, is_mounted, unmount_helpers


@pytest.fixture
def spawn() -> Iterator[Callable[[], Child]]:
    """Factory of :class:`Child` processes, all killed at teardown."""
    children: list[Child] = []

    def make() -> Child:
        children.append(Child())
        return children[-1]

    yield make
    for child in children:
        child.kill()


@pytest.fixture
def mount_dir() -> Iterator[str]:
    """An empty directory to mount on; fails the test if a mount, or libfuse's
    auto-unmount helper process, is left behind."""
    with tempfile.TemporaryDirectory(prefix="rp-emu-", dir="/tmp") as d:
        path = os.path.join(d, "resctrl")
        yield path
        assert not is_mounted(path), f"{path} is still mounted"
        assert unmount_helpers(path) == [], f"fusermount3 helper left for {path}"
