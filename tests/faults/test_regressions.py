"""Fast regression tests for bugs the fault and abuse scenarios found (no FUSE, no
processes); each names the scenario that revealed it."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest

from resctrl_pipeline.cgroups import CgroupReader
from resctrl_pipeline.errors import ResctrlReadError
from resctrl_pipeline.messages import GroupSnapshot, LifecycleSnapshot, PodUp
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.podid import group_name
from resctrl_pipeline.reconcile import Reconciler
from resctrl_pipeline.resctrl.groups import ResctrlGroups, place_init_pid
from resctrl_pipeline.resctrl.mondata import PreadReader, counter_files
from resctrl_pipeline.supervise.supervisor import RuntimeDirError, prepare_runtime_dir
from tests.memory_resctrl import MemoryResctrlOps
from tests.prerequisites import requires
from tests.support import make_group, make_resctrl_tree, set_counter


def _reconciler(tmp_path: Path) -> Reconciler:
    (tmp_path / "pids").mkdir()
    (tmp_path / "pids" / "tasks").write_text("1\n")
    return Reconciler(
        ResctrlGroups(MemoryResctrlOps("/sys/fs/resctrl")), CgroupReader(str(tmp_path))
    )


def test_reconciler_sends_no_groups_snapshot_before_its_first_lifecycle_snapshot(
    tmp_path: Path,
) -> None:
    """test_runtime_faults::test_runtime_gone_while_listener_and_reconciler_restart:
    a reconciler restarted while the runtime was away sent an empty GroupSnapshot on
    its anti-entropy timer, and the sampler dropped every pod it was sampling."""
    core = _reconciler(tmp_path)
    assert core.snapshot("groups") is None  # what the actor shell asks for
    assert core.snapshot() == GroupSnapshot(())  # the state itself is still readable
    core.handle(PodUp("u1", "ns", "n", "/kubepods/podu1"), now=0)
    assert core.snapshot("groups") is None  # deltas go out; snapshots still wait
    core.handle(LifecycleSnapshot((PodUp("u1", "ns", "n", "/kubepods/podu1"),), ()), now=1)
    snap = core.snapshot("groups")
    assert snap is not None and [s.pod_uid for s in snap.states] == ["u1"]


def _fast_path_log(caplog: pytest.LogCaptureFixture, uid: str) -> list[str]:
    """What the listener logs when the StartContainer fast path fails for ``uid``."""

    def place(pod_uid: str, pid: int) -> bool:
        group_name("pod_", pod_uid)  # raises InvalidPodUid, as the real one does
        return True

    listener = NriListener(place_init_pid=place)
    pod = nri_pb2.PodSandbox(id="sandbox", uid=uid, name="n", namespace="ns")
    container = nri_pb2.Container(id="c" * 64, pod_sandbox_id="sandbox", pid=4242)
    with caplog.at_level(logging.DEBUG, logger="resctrl_pipeline.nri.listener"):
        listener.run_pod_sandbox(pod)
        listener.start_container(pod, container)
    assert listener.all_counters()["fast_path.failed"] == 1
    return [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("uid", ["\n2030-01-01 00:00:00,000 CRITICAL forged", "u" * 10240])
def test_listener_logs_hostile_uids_escaped_and_cut(
    caplog: pytest.LogCaptureFixture, uid: str
) -> None:
    """tests/abuse/test_hostile_pods.py: the fast-path warning logged the raw pod uid,
    so a uid with a newline forged a log line and a 10 kB uid made a 10 kB line."""
    messages = _fast_path_log(caplog, uid)
    assert messages
    for message in messages:
        assert "\n" not in message
        assert len(message) < 400


@requires("root")  # to give a file to another user
def test_runtime_dir_with_a_foreign_socket_path_is_refused(tmp_path: Path) -> None:
    """tests/abuse/test_internal_sockets.py: a foreign file at an endpoint path made the
    actor that binds it crash at start, again after every restart, until ``up`` gave
    up minutes later (and the supervisor unlinked its own stats path blindly)."""
    rd = str(tmp_path / "run")
    prepare_runtime_dir(rd)
    ours = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.bind(os.path.join(rd, "stats.sock"))
    ours.close()
    prepare_runtime_dir(rd)  # a leftover socket of ours is fine
    foreign = os.path.join(rd, "occupancy.sock")
    with open(foreign, "w"):
        pass
    os.chown(foreign, 65534, 65534)
    with pytest.raises(RuntimeDirError, match=r"refusing to replace .*occupancy\.sock"):
        prepare_runtime_dir(rd)
    assert os.path.exists(foreign)


def test_counter_files_of_a_group_removed_while_resolving(tmp_path: Path) -> None:
    """tests/abuse/test_nri_fuzz.py (pods created and removed within milliseconds):
    a group removed between listing ``mon_data`` and looking into a domain made
    ``counter_files`` raise FileNotFoundError, which crashed the sampler."""
    mon_data = tmp_path / "pod_x" / "mon_data"
    mon_data.mkdir(parents=True)
    # A domain that is listed but gone by the time it is looked into.
    (mon_data / "mon_L3_00").symlink_to(tmp_path / "vanished")
    with pytest.raises(ResctrlReadError) as err:
        counter_files(str(tmp_path / "pod_x"), "llc_occupancy")
    assert err.value.reason == "gone"  # typed: the group went away
    reader = PreadReader()
    with pytest.raises(ResctrlReadError):
        reader.read(str(tmp_path / "pod_x"))


@pytest.mark.parametrize("text", ["+5\n", "1_000\n", "5 5\n", "-0\n"])
def test_hot_path_refuses_what_the_careful_path_calls_garbage(tmp_path: Path, text: str) -> None:
    """tests/abuse/test_bad_values.py: with descriptors open, counters reading "+5" or
    "1_000" became rows of 5 and 1000 (int() takes signs and underscores), while the
    same text read the careful way is counted as garbage."""
    group = make_group(str(tmp_path / "pod_x"), domains=(0, 1), value=10)
    reader = PreadReader()
    assert reader.read(group).llc_occupancy == 20  # descriptors open from here on
    set_counter(group, 0, "llc_occupancy", text)
    with pytest.raises(ResctrlReadError) as err:
        reader.read(group)
    assert err.value.reason == "garbage"


def test_fast_path_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """scripts/soak.py (pod churn): the nri-listener gained one open descriptor per
    container start, as ``place_init_pid`` dropped a fresh ``OsResctrlOps`` with the
    ``tasks`` descriptor it caches still open."""
    root = str(tmp_path / "resctrl")
    make_resctrl_tree(root)
    group = os.path.join(root, "mon_groups", "pod_u1")
    os.makedirs(group)
    open(os.path.join(group, "tasks"), "w").close()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        assert place_init_pid(root, "pod_", "u1", os.getpid()) is True
    assert len(os.listdir("/proc/self/fd")) == before
