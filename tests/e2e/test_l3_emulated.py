"""L3 end-to-end suite on the emulated node: ``resctrl-pipeline up`` as a user starts
it, the FUSE resctrl emulation as ``--resctrl-root``, the emulated NRI runtime on
``--nri-socket`` and real processes as containers (counterparts of the reference
plan's L3 cases: readiness, Parquet output and labels, rotation, lifecycle,
multi-domain). Parquet artifacts are kept under ``$RP_E2E_ARTIFACTS`` when set.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest

from tests import golden_schema
from tests.prerequisites import missing, requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

if not missing("fuse"):
    from resctrl_pipeline.emulator.node import EmulatedNode, Pod


FAST = ["--sampling-interval", "200ms", "--retry-interval", "1s", "--log-level", "info"]
FAST_TOML = '[output]\nflush_interval = "1s"\n'


class Harness:
    """An emulated node with helpers for reading what the pipeline wrote."""

    def __init__(self, work: str, **node_args: object) -> None:
        self.work = work
        self.node = EmulatedNode(os.path.join(work, "node"), **node_args)  # type: ignore[arg-type]
        os.makedirs(self.node.work, exist_ok=True)
        self.output = os.path.join(work, "out")
        self.log = os.path.join(work, "up.log")
        self.node.start()

    def start(self, *extra: str, toml: str = FAST_TOML) -> None:
        self.node.start_pipeline(self.output, *FAST, *extra, config_toml=toml, log_path=self.log)

    def ready(self) -> bool:
        assert self.node.up is not None and self.node.up.poll() is None, self.log_text()
        return self.node.http("/ready")[0] == 200

    def wait_ready(self, timeout: float = 30) -> None:
        poll_until(self.ready, timeout, interval=0.1, what="/ready 200")

    def log_text(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()

    def files(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.output, "*.parquet")))

    def rows(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for f in self.files():
            out.extend(pq.read_table(f).to_pylist())
        return out

    def rotate_and_rows(self) -> list[dict[str, object]]:
        """Finalise the current file (SIGUSR1 to the supervisor) and read everything.

        A rotation with no buffered rows leaves no file, so the signal is repeated
        until a new file appears.
        """
        before = len(self.files())
        up = self.node.up
        assert up is not None

        def rotated() -> bool:
            up.send_signal(signal.SIGUSR1)
            try:
                poll_until(lambda: len(self.files()) > before, 1.0, what="a rotated file")
            except AssertionError:
                return False
            return True

        poll_until(rotated, 20, interval=0, what="a rotated file")
        return self.rows()

    def group(self, pod: Pod) -> str:
        return self.node.group_path(pod)

    def close(self) -> None:
        try:
            self.node.close()
        finally:
            keep = os.environ.get("RP_E2E_ARTIFACTS")
            if keep and os.path.isdir(self.output):
                dest = tempfile.mkdtemp(prefix="l3-", dir=_artifacts_dir(keep))
                for f in self.files():
                    shutil.copy(f, dest)


def _artifacts_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """An emulated node; its hardware profile (docs/emulator.md) is ``classic`` unless
    parametrised indirectly: ``@pytest.mark.parametrize("harness", ["abmc"],
    indirect=True)``."""
    work = tempfile.mkdtemp(prefix="rp-l3-", dir="/tmp")
    h = Harness(work, hardware=getattr(request, "param", "classic"))
    try:
        yield h
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)


def group_name(pod: Pod) -> str:
    return "pod_" + pod.uid


def test_l3_1_readiness_waits_for_nri_synchronisation(harness: Harness) -> None:
    harness.node.runtime.set_stall(True)  # accepts the plugin, never answers it
    harness.start()
    poll_until(lambda: harness.node.pids().get("http_port"), 20, what="HTTP up")
    poll_until(lambda: "nri-listener" in harness.node.pids().get("actors", {}), 20,
               what="listener started")  # fmt: skip
    code, body = harness.node.http("/ready")
    assert code == 503 and "not ready" in body
    harness.node.runtime.set_stall(False)
    harness.wait_ready()
    assert harness.node.stop_pipeline() == 0


def test_l3_1_not_ready_without_resctrl_and_log_says_why(harness: Harness) -> None:
    missing = os.path.join(harness.work, "no-resctrl")
    harness.node.start_pipeline(harness.output, *FAST, "--resctrl-root", missing,
                                config_toml=FAST_TOML, log_path=harness.log)  # fmt: skip
    poll_until(lambda: "does not exist" in harness.node.http("/ready")[1], 30,
               what="/ready naming the missing resctrl root")  # fmt: skip
    assert harness.node.http("/ready")[0] == 503
    assert harness.node.stop_pipeline() == 0
    assert "resctrl monitoring unusable" in harness.log_text()
    assert not harness.files()


def test_l3_2_parquet_rows_carry_labels_group_and_served_values(harness: Harness) -> None:
    harness.start()
    harness.wait_ready()
    pods = [harness.node.new_pod("idle", name=f"web-{i}", namespace="shop") for i in range(2)]
    for pod in pods:
        harness.node.start_pod(pod)
    tree = harness.node.fs.tree
    for i, pod in enumerate(pods):
        poll_until(lambda p=pod: group_name(p) in tree.groups(), 20, what="group created")
        for domain in (0, 1):
            tree.set_counter(group_name(pod), "llc_occupancy", domain, 1000 * (i + 1) + domain)

    def rows_with_values() -> list[dict[str, object]]:
        rows = harness.rotate_and_rows()
        want = {pods[0].uid: 2001, pods[1].uid: 4001}
        # The group exists from RunPodSandbox on; a row sampled before the reconciler
        # handled ContainerUp rightly says 0 containers. Wait for rows after it.
        hits = [
            r
            for r in rows
            if want.get(str(r["pod_uid"])) == r["llc_occupancy_bytes"]
            and r["total_containers"] == 1
        ]
        return hits if {r["pod_uid"] for r in hits} == set(want) else []

    hits = poll_until(rows_with_values, 30, interval=0.5, what="rows with the pinned values")
    for r in hits:
        pod = next(p for p in pods if p.uid == r["pod_uid"])
        assert (r["pod_namespace"], r["pod_name"]) == ("shop", pod.name)
        assert r["resctrl_group"] == harness.group(pod)
    table = pq.read_table(harness.files()[0])
    assert golden_schema.fields(table.schema)[:9] == golden_schema.FIXED
    meta = pq.ParquetFile(harness.files()[0]).schema_arrow.metadata
    assert meta and any(b"node" in k for k in meta)
    assert harness.node.stop_pipeline() == 0


def _tids(pid: int) -> set[int]:
    return {int(t) for t in os.listdir(f"/proc/{pid}/task")}


def test_l3_threads_every_thread_in_its_group_including_later_ones(harness: Harness) -> None:
    harness.start()
    harness.wait_ready()
    fixed = harness.node.new_pod("fixed-threads", args=("6",))
    forking = harness.node.new_pod("threads")
    for pod in (fixed, forking):
        harness.node.start_pod(pod)
    tree = harness.node.fs.tree
    for pod in (fixed, forking):
        assert pod.proc is not None

        def all_in(p: Pod = pod) -> bool:
            assert p.proc is not None
            tids = _tids(p.proc.pid)
            return len(tids) > 1 and all(tree.group_of(t) == group_name(p) for t in tids)

        poll_until(all_in, 20, interval=0.1, what=f"every thread of {pod.name} in its group")
    assert forking.proc is not None
    first = _tids(forking.proc.pid)
    poll_until(lambda: _tids(forking.proc.pid) - first, 10, what="a new thread")  # type: ignore[union-attr]
    poll_until(lambda: all(tree.group_of(t) == group_name(forking)
                           for t in _tids(forking.proc.pid)), 20,  # type: ignore[union-attr]
               what="threads started later in the group")  # fmt: skip
    rows = poll_until(lambda: [r for r in harness.rotate_and_rows()
                               if r["pod_uid"] == fixed.uid and r["reconciled_containers"] == 1],
                      20, what="a row with the container reconciled")  # fmt: skip
    assert rows[0]["total_containers"] == 1


def test_l3_rotation_by_command_signal_size_and_age(harness: Harness) -> None:
    harness.start(toml=FAST_TOML)
    harness.wait_ready()
    harness.node.start_pod(harness.node.new_pod("idle"))
    poll_until(lambda: harness.node.status()["actors"]["sampler"]["counters"].get("samples"),  # type: ignore[index]
               20, what="samples")  # fmt: skip
    before = len(harness.files())

    def rotated_by_command() -> bool:
        # A rotation with nothing buffered leaves no file: ask again until one appears.
        out = subprocess.run([sys.executable, "-m", "resctrl_pipeline.cli", "rotate",
                              "--runtime-dir", harness.node.runtime_dir],
                             capture_output=True, text=True, check=False)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "rotation requested" in out.stdout
        try:
            poll_until(lambda: len(harness.files()) > before, 1.0, what="file after `rotate`")
        except AssertionError:
            return False
        return True

    poll_until(rotated_by_command, 20, interval=0, what="a file after `rotate`")
    harness.rotate_and_rows()  # SIGUSR1 to the supervisor, forwarded to the writer
    assert harness.node.stop_pipeline() == 0
    for f in harness.files():
        assert pq.read_table(f).num_rows > 0  # no empty files
    # Size and age limits: a fresh run with tiny limits rotates on its own.
    harness.start(toml='[output]\nflush_interval = "1s"\nrotate_interval = "2s"\n')
    count = len(harness.files())
    poll_until(lambda: len(harness.files()) >= count + 2, 30, what="age rotations")
    assert harness.node.stop_pipeline() == 0
    harness.start(toml='[output]\nflush_interval = "1s"\nmax_file_bytes = "4096"\n')
    count = len(harness.files())
    poll_until(lambda: len(harness.files()) >= count + 2, 30, what="size rotations")
    assert harness.node.stop_pipeline() == 0
    for f in harness.files():
        pq.read_table(f)


def test_l3_lifecycle_removed_pod_loses_group_and_rows(harness: Harness) -> None:
    harness.start()
    harness.wait_ready()
    stay, go = harness.node.new_pod("idle"), harness.node.new_pod("idle")
    for pod in (stay, go):
        harness.node.start_pod(pod)
    tree = harness.node.fs.tree
    poll_until(lambda: {group_name(stay), group_name(go)} <= set(tree.groups()), 20,
               what="both groups")  # fmt: skip
    poll_until(lambda: {stay.uid, go.uid} <= {r["pod_uid"] for r in harness.rotate_and_rows()},
               20, what="rows of both pods")  # fmt: skip
    harness.node.stop_pod(go)
    poll_until(lambda: group_name(go) not in tree.groups(), 20, what="group removed")
    cut = harness.rotate_and_rows()
    last_go = max(int(r["timestamp"]) for r in cut if r["pod_uid"] == go.uid)  # type: ignore[call-overload]
    later = poll_until(lambda: [r for r in harness.rotate_and_rows()
                                if int(r["timestamp"]) > last_go], 20,  # type: ignore[call-overload]
                       what="rows after the removal")  # fmt: skip
    assert {r["pod_uid"] for r in later} == {stay.uid}


def test_l3_lifecycle_existing_groups_adopted_across_restart(harness: Harness) -> None:
    pod = harness.node.new_pod("idle")
    harness.node.start_pod(pod)  # exists before `up` starts
    harness.start()
    harness.wait_ready()
    tree = harness.node.fs.tree
    info = poll_until(lambda: tree.groups().get(group_name(pod)), 20, what="group")
    assert harness.node.stop_pipeline() == 0
    assert group_name(pod) in tree.groups()  # left in place on an orderly stop
    harness.start()
    harness.wait_ready()
    poll_until(lambda: any(r["pod_uid"] == pod.uid for r in harness.rotate_and_rows()), 20,
               what="rows after the restart")  # fmt: skip
    assert tree.groups()[group_name(pod)].rmid == info.rmid  # adopted, not recreated
    assert tree.operations().get("rmdir", 0) == 0


def test_l3_lifecycle_runtime_restart_reconnects_and_resyncs(harness: Harness) -> None:
    harness.start()
    harness.wait_ready()
    harness.node.runtime.restart(downtime=1.0)
    late = harness.node.new_pod("idle")
    poll_until(lambda: harness.node.runtime.ready_plugins() >= 1, 30, what="reconnection")
    harness.node.start_pod(late)
    poll_until(lambda: any(r["pod_uid"] == late.uid for r in harness.rotate_and_rows()), 30,
               what="rows of a pod started after the reconnect")  # fmt: skip


def test_l3_lifecycle_killed_actor_restarted_no_file_corrupted(harness: Harness) -> None:
    harness.start()
    harness.wait_ready()
    pod = harness.node.new_pod("busy")
    harness.node.start_pod(pod)
    tree = harness.node.fs.tree
    poll_until(lambda: harness.rotate_and_rows(), 20, what="a file")
    rmid = tree.groups()[group_name(pod)].rmid
    for actor in ("writer", "sampler", "reconciler", "nri-listener"):
        old = harness.node.pids()["actors"][actor]
        os.kill(old, signal.SIGKILL)
        poll_until(lambda a=actor, o=old: harness.node.pids()["actors"].get(a) not in (None, o),
                   20, what=f"{actor} restarted")  # fmt: skip
        harness.wait_ready()
    # The restarted reconciler adopted the group: same RMID, never removed.
    assert tree.groups()[group_name(pod)].rmid == rmid
    assert tree.operations().get("rmdir", 0) == 0
    assert harness.node.stop_pipeline() == 0
    assert harness.files()
    for f in harness.files():
        pq.read_table(f)  # every file readable
    assert not [n for n in os.listdir(harness.output) if not n.endswith(".parquet")]


@pytest.mark.parametrize(("domains", "snc"), [((0, 3), 0), ((0, 1), 2)])
def test_l3_4_multi_domain_values_are_summed(domains: tuple[int, ...], snc: int) -> None:
    work = tempfile.mkdtemp(prefix="rp-l3-", dir="/tmp")
    h = Harness(work, domains=domains, snc=snc)
    try:
        h.start()
        h.wait_ready()
        pod = h.node.new_pod("idle")
        h.node.start_pod(pod)
        tree = h.node.fs.tree
        poll_until(lambda: group_name(pod) in tree.groups(), 20, what="group")
        expected = 0
        for i, d in enumerate(domains):
            if snc:
                for s in range(snc):
                    sub = d * snc + s
                    tree.set_counter(group_name(pod), "llc_occupancy", d, 100 * (i + 1) + s,
                                     sub=sub)  # fmt: skip
                    expected += 100 * (i + 1) + s
            else:
                tree.set_counter(group_name(pod), "llc_occupancy", d, 1000 * (i + 1))
                expected += 1000 * (i + 1)
        poll_until(lambda: any(r["pod_uid"] == pod.uid and r["llc_occupancy_bytes"] == expected
                               for r in h.rotate_and_rows()), 30,
                   what=f"rows with the sum {expected}")  # fmt: skip
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)


# --- hardware profiles (docs/emulator.md): the emulated node's side -------------------


@pytest.mark.parametrize("harness", ["runtime-groups"], indirect=True)
def test_l3_profile_runtime_made_groups_and_a_pruning_runtime_restart(harness: Harness) -> None:
    """The runtime makes mon_groups/<container-id> with the container's process and
    prunes empty MON groups when it restarts; the pipeline keeps sampling the pod."""
    harness.start()
    harness.wait_ready()
    pod = harness.node.new_pod("busy")
    harness.node.start_pod(pod)
    tree = harness.node.fs.tree
    assert pod.container_id in tree.groups()  # made before StartContainer reached anyone
    poll_until(lambda: any(r["pod_uid"] == pod.uid for r in harness.rotate_and_rows()), 30,
               what="rows of the pod")  # fmt: skip
    pruned = harness.node.runtime.restart(downtime=1.0)
    assert all(os.path.basename(p) not in tree.groups() for p in pruned)
    restarted_ns = time.time_ns()
    poll_until(lambda: harness.node.runtime.ready_plugins() >= 1, 30, what="reconnection")
    poll_until(lambda: any(r["pod_uid"] == pod.uid and int(r["timestamp"]) > restarted_ns  # type: ignore[call-overload]
                           for r in harness.rotate_and_rows()), 30,
               what="rows of the pod after the restart")  # fmt: skip
    harness.node.stop_pod(pod)
    assert pod.container_id not in tree.groups()  # deleted with the container


@pytest.mark.parametrize("harness", ["abmc+classes"], indirect=True)
def test_l3_profile_pods_in_an_rdt_class_on_abmc(harness: Harness) -> None:
    """A pod whose container the runtime put into the class ``gold`` stays in that
    class (the pipeline cannot take its threads out of it) and still gets rows."""
    harness.start()
    harness.wait_ready()
    plain, classy = harness.node.new_pod("busy"), harness.node.new_pod("busy", rdt_class="gold")
    for pod in (plain, classy):
        harness.node.start_pod(pod)
    tree = harness.node.fs.tree
    assert classy.proc is not None
    poll_until(lambda: {plain.uid, classy.uid} <= {r["pod_uid"] for r in harness.rotate_and_rows()},
               30, what="rows of both pods")  # fmt: skip
    assert tree.group_of(classy.proc.pid).startswith("gold/")
    assert tree.group_of(plain.proc.pid if plain.proc else 0) == group_name(plain)
    with open(os.path.join(harness.node.resctrl_root, "info", "L3_MON", "num_mbm_cntrs")) as f:
        assert f.read() == "0=32;1=32\n"


def test_l3_3_busy_occupancy_varies_over_time_and_exceeds_an_idle_pods(harness: Harness) -> None:
    """Occupancy comes from the workload (the emulator derives it from each group's
    CPU use; nothing is pinned here): a CPU-bound pod's value changes from tick to tick
    and stays above an idle pod's."""
    harness.start()
    harness.wait_ready()
    busy, idle = harness.node.new_pod("busy"), harness.node.new_pod("idle")
    for pod in (busy, idle):
        harness.node.start_pod(pod)

    def series() -> dict[str, list[int]] | None:
        out: dict[str, list[int]] = {busy.uid: [], idle.uid: []}
        for r in sorted(harness.rotate_and_rows(), key=lambda r: int(str(r["timestamp"]))):
            if r["pod_uid"] in out:
                out[str(r["pod_uid"])].append(int(str(r["llc_occupancy_bytes"])))
        enough = all(len(v) >= 10 for v in out.values())
        return out if enough and len(set(out[busy.uid])) >= 4 else None

    values = poll_until(series, 60, interval=1, what="10 rows of each pod, 4 busy values")
    b, i = values[busy.uid], values[idle.uid]
    assert len(set(b)) >= 4, f"busy occupancy does not vary: {b}"
    assert sorted(b)[len(b) // 2] > max(i), f"busy {b} not above idle {i}"
    assert harness.node.stop_pipeline() == 0


def test_l3_5_resctrl_refusing_the_agent_is_not_ready_says_why_and_recovers(
    harness: Harness,
) -> None:
    """EACCES from resctrl (a read-only mount, missing privileges) when creating a pod's
    group: /ready 503 naming the permission problem, a log line saying why, no actor
    restarted; once resctrl lets the agent in again, the pod is monitored and ready."""
    harness.start()
    harness.wait_ready()
    pids = dict(harness.node.pids()["actors"])
    harness.node.fs.tree.fail_next("mkdir", errno.EACCES, times=8)  # ~8 retries at 1 s
    pod = harness.node.new_pod("idle")
    harness.node.start_pod(pod)

    def refused() -> str:
        code, body = harness.node.http("/ready")
        return body if code == 503 and "permission denied" in body else ""

    body = poll_until(refused, 20, interval=0.1, what="/ready 503 naming the permission problem")
    assert "resctrl_access" in body, body
    poll_until(lambda: "Permission denied" in harness.log_text(), 10, what="a log line why")
    harness.wait_ready(40)
    poll_until(lambda: group_name(pod) in harness.node.fs.tree.groups(), 20, what="its group")
    assert harness.node.pids()["actors"] == pids, "an actor was restarted"
    assert harness.node.fs.tree.pending_faults() == {}
    assert harness.node.stop_pipeline() == 0
