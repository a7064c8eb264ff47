"""Helpers for the emulator tests: FUSE availability, real child processes, mounts.

Child processes are real (their TIDs must exist in ``/proc``) and are driven over a
pipe: each command gets one reply line, so the tests synchronise on replies, never on
sleeps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.prerequisites import missing, requires
from tests.support import poll_until

#: Why FUSE tests cannot run here, or "" when they can (mounting FUSE as another user
#: would need allow_other set-up, so root is part of it).
FUSE_MISSING = missing("fuse")
requires_fuse = requires("fuse")

_CHILD = r"""
import os, subprocess, sys, threading

threads = {}

def reply(*words):
    print(*words, flush=True)

def start(target):
    box, ready, ev = [], threading.Event(), threading.Event()
    def run():
        box.append(threading.get_native_id())
        ready.set()
        target(ev)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait()
    threads[box[0]] = (ev, t)
    return box[0]

def spin(ev):
    while not ev.is_set():
        pass

reply(os.getpid())
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "thread":
        reply(start(lambda ev: ev.wait()))
    elif cmd[0] == "busy":
        reply(start(spin))
    elif cmd[0] == "end":
        ev, t = threads.pop(int(cmd[1]))
        ev.set()
        t.join()
        reply("ok")
    elif cmd[0] == "fork":
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
        reply(child.pid)
"""


class Child:
    """A real Python process whose threads the tests create and end on demand."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = int(self._reply())

    def _reply(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "child process died"
        return line.strip()

    def ask(self, command: str) -> str:
        """Send one command (``thread``, ``busy``, ``end <tid>``, ``fork``); its reply."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def tids(self) -> list[int]:
        """Every TID of the process now."""
        return sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))

    def kill(self) -> None:
        """Kill the process and everything it started."""
        for tid in self.tids() if self.proc.poll() is None else []:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/children") as f:
                    for grandchild in f.read().split():
                        os.kill(int(grandchild), 9)
            except OSError:
                pass
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def is_mounted(path: str) -> bool:
    """Whether something is mounted exactly at ``path``."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def wait_gone(tid: int, timeout: float = 5.0) -> None:
    """Wait until ``/proc/<tid>`` is gone (a joined thread can linger briefly)."""
    poll_until(lambda: not os.path.exists(f"/proc/{tid}"), timeout, what=f"TID {tid} to exit")


def unmount_helpers(path: str) -> list[int]:
    """PIDs of this process's ``fusermount3`` children serving the mount at ``path``."""
    found = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                children = f.read().split()
            for pid in children:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().rstrip(b"\0").split(b"\0")
                if argv[0].endswith(b"fusermount3") and argv[-1] == path.encode():
                    found.append(int(pid))
        except OSError:
            continue
    return found


class FakeProc:
    """A proc tree with /proc/stat and threads whose CPU time the test sets."""

    def __init__(self, root: Path, cpus: int) -> None:
        self.root = root
        self.cpus = cpus
        self.host = [0] * cpus
        self.write_host()

    def write_host(self) -> None:
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        lines += [f"cpu{i} {busy} 0 0 0 0 0 0 0 0 0" for i, busy in enumerate(self.host)]
        (self.root / "stat").write_text("\n".join(lines) + "\n")

    def thread(self, tid: int, cpu_ticks: int, cpu: int) -> None:
        task = self.root / str(tid)
        (task / "task" / str(tid)).mkdir(parents=True, exist_ok=True)
        (task / "task" / str(tid) / "children").write_text("")
        (task / "status").write_text(f"Name:\tx\nTgid:\t{tid}\n")
        fields = ["S", "1"] + ["0"] * 48
        fields[11], fields[19], fields[36] = str(cpu_ticks), "7", str(cpu)
        (task / "stat").write_text(f"{tid} (fake) " + " ".join(fields) + "\n")


class FakeClock:
    """A clock the test moves by hand (``now`` in seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
