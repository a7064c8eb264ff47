"""Fixtures of the fault suite: one emulated node per test, torn down whatever happens."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest

from tests.faults.harness import FaultHarness
from tests.prerequisites import need


def _work() -> str:
    return tempfile.mkdtemp(prefix="rp-f-", dir="/tmp")


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Iterator[FaultHarness]:
    """An emulated node (2 L3 domains, MBM, 64 RMIDs); the test starts ``up`` itself.

    The hardware profile (docs/emulator.md) is ``classic`` unless parametrised
    indirectly (``@pytest.mark.parametrize("harness", ["snc"], indirect=True)``);
    ``harness_factory(hardware=..., **node)`` takes it too.
    """
    need("fuse")
    work = _work()
    h = FaultHarness(work, hardware=getattr(request, "param", "classic"))
    try:
        yield h
        _no_tracebacks(h)
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def harness_factory() -> Iterator[Callable[..., FaultHarness]]:
    """For tests that need a node with other parameters: ``harness_factory(**node)``."""
    need("fuse")
    made: list[tuple[FaultHarness, str]] = []

    def make(**node_args: object) -> FaultHarness:
        work = _work()
        h = FaultHarness(work, **node_args)
        made.append((h, work))
        return h

    try:
        yield make
        for h, _ in made:
            _no_tracebacks(h)
    finally:
        for h, work in made:
            h.close()
            shutil.rmtree(work, ignore_errors=True)


def _no_tracebacks(h: FaultHarness) -> None:
    """No process of the pipeline crashed with an exception (or logged one)."""
    if os.path.exists(h.log):
        text = h.log_text()
        assert "Traceback" not in text, text[text.index("Traceback") - 2000 :][:6000]
