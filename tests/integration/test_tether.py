"""An actor ties itself to ``up``: parent-death signal and orphan check at its start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from resctrl_pipeline.config import dump_handoff, load
from resctrl_pipeline.supervise.spawner import ActorProcess
from resctrl_pipeline.tether import ENV
from tests.support import poll_until

pytestmark = pytest.mark.slow


def _handoff(tmp: str) -> str:
    path = os.path.join(tmp, "config.json")
    src = load(environ={}, overrides={"pipeline.runtime_dir": os.path.join(tmp, "run"),
                                      "output.dir": os.path.join(tmp, "out")})  # fmt: skip
    os.makedirs(os.path.join(tmp, "run"), mode=0o700)
    with open(path, "wb") as f:
        f.write(dump_handoff(src))
    return path


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_actor_whose_supervisor_is_gone_exits_at_once(short_tmp: str) -> None:
    config = _handoff(short_tmp)
    # The expected supervisor is not this process's parent: it "died" before the start.
    env = dict(os.environ, **{ENV: str(2**22 + 1)})
    cmd = [sys.executable, "-m", "actors.writer", "--effective-config", config]
    proc = subprocess.run(cmd, env=env, stdin=subprocess.PIPE, capture_output=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert b"supervisor 4194305 is gone" in proc.stderr
    # It exited before doing anything: no socket bound, no output directory.
    assert os.listdir(os.path.join(short_tmp, "run")) == []
    assert not os.path.exists(os.path.join(short_tmp, "out"))


def test_actor_stops_when_its_supervisor_is_killed(short_tmp: str) -> None:
    """The parent-death signal, set by the actor itself, is all that stops it here: its
    control pipe stays open (this test holds the write end too)."""
    config = _handoff(short_tmp)
    r, w = os.pipe()
    parent_code = (
        "import os, subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-m', 'actors.writer', '--effective-config',"
        f" {config!r}], stdin={r}, env=dict(os.environ, {ENV}=str(os.getpid())))\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE,
                              pass_fds=(r,))  # fmt: skip
    try:
        assert parent.stdout is not None
        actor = int(parent.stdout.readline())
        run = os.path.join(short_tmp, "run")
        # Up and running: it bound its input socket.
        poll_until(lambda: os.listdir(run), 60, interval=0.05, what="the writer's socket")
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        poll_until(lambda: _gone(actor), 20, interval=0.05, what="the orphaned actor to exit")
    finally:
        os.close(r)
        os.close(w)
        parent.kill()


def test_group_signal_during_an_actors_start_up_is_left_to_up(short_tmp: str) -> None:
    """A Ctrl-C that reaches an actor while Python is still starting (right after a
    restart) neither kills it nor stops it: ``up`` spawns it with the stop signals
    blocked until its handlers are in place."""
    config = _handoff(short_tmp)
    proc = ActorProcess("writer", config)
    pid = proc.start()
    os.kill(pid, signal.SIGINT)  # long before the interpreter is up
    os.kill(pid, signal.SIGTERM)
    run = os.path.join(short_tmp, "run")
    try:
        poll_until(lambda: os.listdir(run), 60, interval=0.05, what="the writer's socket")
        assert proc.running()
        proc.close_control()  # how up asks for the stop
        assert proc.wait(30) == 0
    finally:
        proc.kill()
