"""A newcomer's first session, scripted: a fresh clone, ``scripts/demo.sh`` (which makes
a fresh .venv), then every command the demo prints, exactly as printed, from the
directory the user started in — while the demo runs, and after it.

Needs root and FUSE, and pip able to install the package's dependencies (network or
a warm pip cache); without them it skips (fails under ``RESCTRL_REQUIRE_ALL=1``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.prerequisites import requires, unavailable
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fresh_clone(dest: str) -> str:
    """The repository's tracked files (as a clone has them), without any .venv."""
    names = subprocess.run(["git", "-C", REPO, "ls-files", "-z"], capture_output=True,
                           check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, names):
        src = os.path.join(REPO, name)
        if not os.path.isfile(src):  # deleted in the work tree, not yet committed
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, name))
    return dest


def run_as_printed(line: str, cwd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line.strip()], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


@pytest.fixture
def session(tmp_path: str) -> Iterator[tuple[str, str]]:
    clone = fresh_clone(os.path.join(str(tmp_path), "clone"))
    home = os.path.join(str(tmp_path), "home")  # where the user types the commands
    os.makedirs(home)
    yield clone, home


def test_newcomer_runs_the_demo_and_every_command_it_prints(session: tuple[str, str]) -> None:
    clone, home = session
    log_path = os.path.join(home, "demo.log")
    started = time.monotonic()
    with open(log_path, "wb") as log:
        demo = subprocess.Popen([os.path.join(clone, "scripts", "demo.sh"), "--duration", "45s",
                                 "--pods", "3"], cwd=home, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    def output() -> str:
        with open(log_path, "rb") as f:
            return f.read().decode(errors="replace")

    try:
        def watching() -> bool:
            if demo.poll() is not None:
                if "pip install failed" in output():
                    unavailable("pip cannot install the dependencies: " + output()[-300:])
                raise AssertionError(f"demo ended early ({demo.returncode}):\n{output()}")
            return "watch it from another terminal" in output()

        poll_until(watching, 900, interval=0.2, what="the demo's watch commands")
        commands = {kind: line for line, kind in
                    ((m[1], m[2]) for m in re.finditer(r"^  (\S+ (top|status|rotate|report)"
                                                       r" .*)$", output(), re.M))}  # fmt: skip
        assert set(commands) == {"top", "status", "rotate", "report"}, output()
        # `top` as printed is the live view: it draws a screen, and Ctrl-C ends it.
        live = subprocess.Popen(["bash", "-c", commands["top"]], cwd=home,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        assert live.stdout is not None
        screen = live.stdout.readline() + live.stdout.readline()
        first_screen = time.monotonic() - started
        os.killpg(live.pid, signal.SIGINT)
        assert live.wait(30) == 0, live.stderr.read() if live.stderr else ""
        assert "node demo-node" in screen, screen
        once = run_as_printed(commands["top"] + " --once --format json", home)
        assert once.returncode == 0, once.stderr
        view = json.loads(once.stdout)
        assert view["node"] == "demo-node" and view["pods"], view
        status = run_as_printed(commands["status"], home)
        assert status.returncode == 0 and "writer" in status.stdout, status.stderr
        rotate = run_as_printed(commands["rotate"], home)
        assert rotate.returncode == 0 and "rotation requested" in rotate.stdout, rotate.stderr

        def report_reads_rows() -> bool:
            result = run_as_printed(commands["report"], home)
            return result.returncode == 0 and " rows from " in result.stdout

        poll_until(report_reads_rows, 60, interval=1, what="report on the live output")
        plot = run_as_printed(commands["report"] + " --plot live.png", home, timeout=120)
        assert plot.returncode == 0, plot.stdout + plot.stderr
        assert os.path.getsize(os.path.join(home, "live.png")) > 0
        curl = [line for line in output().splitlines() if line.strip().startswith("curl ")]
        if curl and shutil.which("curl"):
            metrics = run_as_printed(curl[0], home)
            assert metrics.returncode == 0 and "resctrl_pipeline_ready" in metrics.stdout
        assert demo.wait(300) == 0, output()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)
            demo.wait(120)
    # After the demo: the commands it printed at the end, as printed, where the user is.
    after = re.findall(r"^(?:inspect them with|  or draw them): +(.*)$", output(), re.M)
    assert len(after) == 2, output()
    for line in after:
        result = run_as_printed(line, home, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
    assert os.path.getsize(os.path.join(home, "occupancy.png")) > 0
    out_dirs = os.listdir(os.path.join(home, "demo-output"))
    assert len(out_dirs) == 1  # relative to the user's directory, not the clone's
    print(f"\nnewcomer: first `top` screen {first_screen:.1f}s after scripts/demo.sh started "
          f"(load {os.getloadavg()[0]:.1f})")  # fmt: skip
