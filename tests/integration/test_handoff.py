"""The configuration ``up`` hands to its actors arrives intact, whatever it contains."""

from __future__ import annotations

import os

import pytest

from tests.integration.pipeline import RunningPipeline
from tests.support import poll_until

pytestmark = pytest.mark.slow


def test_path_with_control_characters_reaches_the_actor_unchanged(short_tmp: str) -> None:
    # Carriage return, escape, DEL, tab, quotes and backslashes: all accepted by the
    # validators; a hand-made TOML writer turned them into a file the actor refused.
    root = os.path.join(short_tmp, 'r\r\x1b[1m\x7f\t"\\\'')
    p = RunningPipeline(os.path.join(short_tmp, "run"),
                        ["--actors", "sampler", "--resctrl-root", root,
                         "--output", os.path.join(short_tmp, "out")],
                        os.path.join(short_tmp, "up.log"))  # fmt: skip
    try:
        p.wait_serving(("sampler",))

        def why_not_ready() -> str:
            info = p.status()["actors"]["sampler"]["info"]
            return str(info.get("resctrl", ""))

        # The sampler names the path it was given (there is nothing mounted there).
        why = poll_until(why_not_ready, 30, interval=0.05, what="the sampler's resctrl probe")
        assert why.startswith(f"{root} does not exist ("), repr(why)
        assert p.terminate() == 0, p.log()
        assert "exited" not in p.log(), p.log()
    finally:
        p.kill()
