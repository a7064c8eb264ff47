"""The configuration ``up`` hands to its actors arrives intact, whatever it contains."""

from __future__ import annotations

import os

import pytest

from tests.integration.pipeline import RunningPipeline
from tests.support import poll_until

pytestmark = pytest.mark.slow


def test_output_dir_with_control_characters_reaches_the_writer(short_tmp: str) -> None:
    # Carriage return, escape, DEL, tab, quotes and backslashes: all accepted by the
    # validators; a hand-made TOML writer turned them into a file the actor refused.
    out = os.path.join(short_tmp, 'o\r\x1b[1m\x7f\t"\\\'')
    p = RunningPipeline(os.path.join(short_tmp, "run"),
                        ["--actors", "writer", "--output", out],
                        os.path.join(short_tmp, "up.log"))  # fmt: skip
    try:
        # The writer creates exactly this directory at start.
        poll_until(lambda: os.path.isdir(out), 30, interval=0.05, what="the output directory")
        assert p.proc.poll() is None, p.log()
        assert p.terminate() == 0, p.log()
        assert "exited" not in p.log(), p.log()
    finally:
        p.kill()
