"""``demo`` as a newcomer meets it: Ctrl-C at any moment, bad arguments, two at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest

from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

#: What a user must never see from the demo.
NOISE = ("Traceback", "KeyboardInterrupt", "Aborted!", "Ignoring invalid max threads")


class Demo:
    """``resctrl-pipeline demo`` in its own process group, as a terminal runs it."""

    def __init__(self, cwd: str, *args: str) -> None:
        self.log_path = os.path.join(cwd, f"demo-{len(os.listdir(cwd))}.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "resctrl_pipeline", "demo", *args], cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def ctrl_c(self) -> None:
        """SIGINT to the whole process group, as the terminal sends it."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float = 180) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def demos(tmp_path: str) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for d in started:
        d.kill()


def test_ctrl_c_while_sampling_stops_cleanly_and_prints_the_summary(
    tmp_path: str, demos: list[Demo]
) -> None:
    demo = Demo(str(tmp_path), "--duration", "120s", "--pods", "3", "--output", "out")
    demos.append(demo)
    poll_until(lambda: "sampling for" in demo.output(), 120, interval=0.1, what="sampling")
    poll_until(lambda: "left: ready=True" in demo.output(), 60, interval=0.1, what="rows")
    demo.ctrl_c()
    assert demo.wait() == 130, demo.output()
    out = demo.output()
    assert "interrupted: stopping the pods and the pipeline" in out
    assert "resctrl-pipeline up stopped (exit code 0)" in out
    rows = re.search(r"(\d+) rows in (\d+) Parquet file\(s\) under (\S+)", out)
    assert rows and int(rows[1]) > 0, out
    assert rows[3] == os.path.join(str(tmp_path), "out")  # relative to where the user is
    for noise in NOISE:
        assert noise not in out, out


def test_ctrl_c_during_start_up_stops_without_a_traceback(
    tmp_path: str, demos: list[Demo]
) -> None:
    demo = Demo(str(tmp_path), "--duration", "60s", "--pods", "2", "--output", "out")
    demos.append(demo)
    poll_until(lambda: "waiting until it is ready" in demo.output(), 120, interval=0.01,
               what="the start of up")  # fmt: skip
    demo.ctrl_c()
    assert demo.wait() == 130, demo.output()
    out = demo.output()
    assert "interrupted: stopping the pods and the pipeline" in out
    for noise in NOISE:
        assert noise not in out, out


def test_output_that_is_a_file_is_one_line_and_exit_2(tmp_path: str) -> None:
    result = subprocess.run([sys.executable, "-m", "resctrl_pipeline", "demo", "--output",
                             "/etc/hostname"], capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --output: output dir /etc/hostname is not a directory"
    ]


def test_two_demos_with_default_settings_each_get_their_own_output(
    tmp_path: str, demos: list[Demo]
) -> None:
    pair = [Demo(str(tmp_path), "--duration", "3s", "--pods", "1") for _ in range(2)]
    demos.extend(pair)
    codes = [d.wait() for d in pair]
    outs = [d.output() for d in pair]
    assert codes == [0, 0], outs
    dirs = [re.search(r"Parquet file\(s\) under (\S+)", o) for o in outs]
    assert dirs[0] and dirs[1], outs
    assert dirs[0][1] != dirs[1][1]
    for d in dirs:
        assert d and d[1].startswith(os.path.join(str(tmp_path), "demo-output") + os.sep)
    # Every row says its node, and the demo's pods carry their kind as an app label.
    assert dirs[0]
    table = pq.read_table(dirs[0][1])
    assert set(table.column("node").to_pylist()) == {"demo-node"}
    assert set(table.column("label_app_kubernetes_io_name").to_pylist()) == {"busy"}
