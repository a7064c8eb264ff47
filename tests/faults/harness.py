"""Harness shared by the fault (``tests/faults``) and abuse (``tests/abuse``) suites:
the real ``resctrl-pipeline up`` against the emulated node (FUSE resctrl, emulated
cgroups and NRI runtime, real processes as pods).

It extends the L3 suite's :class:`tests.e2e.test_l3_emulated.Harness` with what fault
injection needs: many cheap pods (``sleep`` processes), actor pids and counters from
``/status``, process RSS and descriptor counts, hidden writer files, and helpers that
measure how many sampling ticks a fault cost.
"""

from __future__ import annotations

import glob
import itertools
import os
import signal
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from tests.prerequisites import missing
from tests.support import poll_until

#: Why the emulated node cannot run here ("" when it can): the suites are marked
#: ``requires("fuse")``; the FUSE-backed modules load only when it can.
MISSING = missing("fuse")

if not MISSING:
    from resctrl_pipeline.emulator.node import Pod
    from tests.e2e.test_l3_emulated import Harness
else:  # pragma: no cover - the suites skip; keep the names importable
    Harness = object  # type: ignore[assignment,misc]

PREFIX = "pod_"
#: Quiet logs (info) but fast timers: anti-entropy and re-checks every second.
BASE_ARGS = ("--retry-interval", "1s", "--log-level", "info")
FLUSH_TOML = '[output]\nflush_interval = "1s"\n'


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def open_fds(pid: int) -> int:
    """Open descriptors of ``pid`` (0 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


@dataclass(frozen=True)
class TickLoss:
    """What a window of sampling ticks looked like in the output."""

    ticks_seen: int
    ticks_expected: int
    rows_lost: int
    longest_gap_s: float


def tick_loss(
    rows: Iterable[dict[str, Any]], interval: float, pods: set[str], start_ns: int, end_ns: int
) -> TickLoss:
    """Count sampling ticks (distinct ``start_timestamp``) of ``pods`` between two
    wall-clock instants and how many rows of those pods are missing.

    A tick that is not in the output at all counts ``len(pods)`` rows lost; a tick with
    only some of the pods counts the missing ones.
    """
    per_tick: dict[int, int] = {}
    for r in rows:
        ts = int(r["start_timestamp"])
        if start_ns <= ts < end_ns and r["pod_uid"] in pods:
            per_tick[ts] = per_tick.get(ts, 0) + 1
    stamps = sorted(per_tick)
    expected = max(1, round((end_ns - start_ns) / 1e9 / interval))
    edges = [start_ns, *stamps, end_ns]
    gap = max((b - a) for a, b in itertools.pairwise(edges)) / 1e9
    missing_ticks = max(0, expected - len(stamps))
    partial = sum(len(pods) - n for n in per_tick.values())
    return TickLoss(len(stamps), expected, missing_ticks * len(pods) + partial, gap)


class FaultHarness(Harness):  # type: ignore[misc,valid-type]
    """An emulated node, the pipeline against it, and fault-injection helpers."""

    # --- the pipeline ----------------------------------------------------------------

    def start(self, *extra: str, toml: str = FLUSH_TOML, sampling: float = 0.2,  # type: ignore[override]
              own_group: bool = False) -> None:  # fmt: skip
        """Start ``up`` with fast timers (``sampling`` seconds between ticks); with
        ``own_group`` it leads its own process group (see ``EmulatedNode``)."""
        self.node.start_pipeline(
            self.output,
            "--sampling-interval",
            f"{round(sampling * 1000)}ms",
            *BASE_ARGS,
            *extra,
            config_toml=toml,
            log_path=self.log,
            own_group=own_group,
        )

    def pid(self, actor: str) -> int:
        """The actor's current pid (fails when it is not running)."""
        pid = self.node.pids().get("actors", {}).get(actor)
        assert pid, f"{actor} is not running: {self.node.pids()}"
        return int(pid)

    def wait_restarted(self, actor: str, old: int, timeout: float = 20) -> int:
        """Wait until a new process of ``actor`` runs and reported; returns its pid."""
        new: int = poll_until(
            lambda: (
                p if (p := self.node.pids().get("actors", {}).get(actor)) not in (None, old) else 0
            ),
            timeout,
            interval=0.05,
            what=f"{actor} restarted",
        )
        self.wait_fresh(actor, timeout)
        return new

    def actor(self, name: str) -> dict[str, Any]:
        """The actor's entry in ``/status`` ({} when unknown or unreachable)."""
        doc = self.node.status() or {}
        entry: dict[str, Any] = doc.get("actors", {}).get(name, {}) or {}
        return entry

    def fresh(self, actor: str) -> bool:
        """True once the running process of ``actor`` has sent a heartbeat (before that,
        ``/status`` still shows the counters of the process it replaced)."""
        code, body = self.node.http("/ready")
        return (
            code != 0
            and f"no heartbeat from {actor}" not in body
            and (f"actor {actor} is not running" not in body)
        )

    def wait_fresh(self, actor: str, timeout: float = 20) -> None:
        poll_until(
            lambda: self.fresh(actor),
            timeout,
            interval=0.05,
            what=f"a heartbeat of the new {actor}",
        )

    def counter(self, actor: str, key: str) -> float:
        """One counter of an actor from ``/status`` (0 when absent)."""
        return float((self.actor(actor).get("counters") or {}).get(key, 0))

    def gauge(self, actor: str, key: str) -> float:
        """One gauge of an actor from ``/status`` (0 when absent)."""
        return float((self.actor(actor).get("gauges") or {}).get(key, 0))

    def restarts(self) -> dict[str, int]:
        """Restarts per actor so far."""
        doc = self.node.status() or {}
        return {a: int(v.get("restarts", 0)) for a, v in doc.get("actors", {}).items()}

    def kill_tree(self) -> None:
        """SIGKILL the supervisor and every actor at once (no orderly stop anywhere)."""
        up = self.node.up
        assert up is not None
        pids = [int(p) for p in self.node.pids().get("actors", {}).values()]
        for pid in pids:  # the actors first: the supervisor's death would SIGTERM them
            os.kill(pid, signal.SIGSTOP)
        os.kill(up.pid, signal.SIGKILL)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        up.wait()
        for pid in pids:
            poll_until(
                lambda p=pid: not os.path.exists(f"/proc/{p}") or _zombie(p),
                10,
                what=f"actor {pid} gone",
            )

    # --- pods --------------------------------------------------------------------------

    def start_sleep_pod(self, pod: Pod) -> None:
        """Like :meth:`EmulatedNode.start_pod` but the container is ``sleep`` (cheap)."""
        node = self.node
        node.runtime.add_pod(pod.uid, pod.namespace, pod.name, pod.cgroup_parent)
        pod.proc = subprocess.Popen(["sleep", "100000"], stdin=subprocess.DEVNULL)
        pod.container_id = uuid.uuid4().hex + uuid.uuid4().hex
        node.cgroups.attach(pod.cgroup_rel, [pod.proc.pid])
        node.runtime.add_container(
            pod.container_id,
            pod.uid,
            f"{pod.cgroup_parent}/{pod.container_id}",
            pod.proc.pid,
            name="sleep",
        )
        pod.up = True

    def sleep_pods(self, n: int, namespace: str = "load") -> list[Pod]:
        """Start ``n`` cheap pods; returns them."""
        pods = []
        for i in range(n):
            pod = self.node.new_pod("idle", name=f"p{len(self.node.pods)}-{i}", namespace=namespace)
            self.start_sleep_pod(pod)
            pods.append(pod)
        return pods

    def group_names(self, pods: Iterable[Pod]) -> set[str]:
        return {PREFIX + p.uid for p in pods}

    def wait_groups(self, pods: Iterable[Pod], timeout: float = 30) -> dict[str, int]:
        """Wait until every pod has its group, holding its thread; returns name → RMID."""
        names = self.group_names(pods)
        tree = self.node.fs.tree

        def placed() -> dict[str, int] | None:
            groups = tree.groups()
            if not names <= set(groups):
                return None
            if any(not groups[n].tids for n in names):
                return None
            return {n: groups[n].rmid for n in names}

        result: dict[str, int] = poll_until(
            placed, timeout, interval=0.1, what=f"{len(names)} groups with their threads"
        )
        return result

    # --- output ------------------------------------------------------------------------

    def hidden(self) -> list[str]:
        """Hidden writer files (``.<name>.partial`` / ``.<name>.journal``)."""
        return sorted(glob.glob(os.path.join(self.output, ".*")))

    def read_all(self) -> list[dict[str, Any]]:
        """Every row of every ``*.parquet`` (each file must be readable)."""
        rows: list[dict[str, Any]] = []
        for f in self.files():
            rows.extend(pq.read_table(f).to_pylist())
        return rows

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log_text().splitlines() if needle in line]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def uids(pods: Iterable[Pod]) -> set[str]:
    return {p.uid for p in pods}
