"""Container cgroup resolution and thread lists: systemd/cgroupfs x v1/v2, real v1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from resctrl_pipeline.cgroups import (
    CgroupGone,
    CgroupReader,
    CgroupsUnavailable,
    container_relpath,
    detect_layout,
    expand_slice,
    pod_relpaths,
)
from resctrl_pipeline.messages import ContainerUp, LifecycleSnapshot, PodUp
from resctrl_pipeline.reconcile import Reconciler
from resctrl_pipeline.resctrl.groups import ResctrlGroups
from resctrl_pipeline.resctrl.plaindir import PlainDirResctrlOps
from tests.prerequisites import unavailable

DATA = Path(__file__).parent / "data"
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
UNIT = UID.replace("-", "_")
C1, C2, C3 = "a1" * 32, "b2" * 32, "c3" * 32


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("kubepods.slice", "kubepods.slice"),
        (
            f"kubepods-besteffort-pod{UNIT}.slice",
            f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UNIT}.slice",
        ),
        ("kubepods-pod1.slice", "kubepods.slice/kubepods-pod1.slice"),
        ("-.slice", ""),
        ("/kubepods/besteffort/pod1", "/kubepods/besteffort/pod1"),
        ("system.slice/x.scope", "system.slice/x.scope"),
    ],
)
def test_expand_slice(name: str, path: str) -> None:
    assert expand_slice(name) == path


SYSTEMD_POD = f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UNIT}.slice"


@pytest.mark.parametrize(
    ("cgroup_path", "parent", "rel"),
    [
        # systemd driver: slice:runtime:id
        (
            f"kubepods-besteffort-pod{UNIT}.slice:cri-containerd:{C1}",
            "",
            f"{SYSTEMD_POD}/cri-containerd-{C1}.scope",
        ),
        # empty slice part: the pod's parent (slice name or path) stands in
        (
            f":cri-containerd:{C1}",
            f"kubepods-besteffort-pod{UNIT}.slice",
            f"{SYSTEMD_POD}/cri-containerd-{C1}.scope",
        ),
        (
            f":cri-containerd:{C1}",
            f"/sys/fs/cgroup/{SYSTEMD_POD}",
            f"{SYSTEMD_POD}/cri-containerd-{C1}.scope",
        ),
        # colon form under a cgroupfs parent: parent/<id>
        (
            f":cri-containerd:{C1}",
            f"/kubepods/besteffort/pod{UID}",
            f"kubepods/besteffort/pod{UID}/{C1}",
        ),
        # cgroupfs driver
        (f"/kubepods/besteffort/pod{UID}/{C1}", "", f"kubepods/besteffort/pod{UID}/{C1}"),
        (f"/sys/fs/cgroup/kubepods/pod{UID}/{C1}", "", f"kubepods/pod{UID}/{C1}"),
        (f"/sys/fs/cgroup/pids/kubepods/pod{UID}/{C1}", "", f"kubepods/pod{UID}/{C1}"),
        (f"kubepods/pod{UID}/{C1}", "", f"kubepods/pod{UID}/{C1}"),
        # nothing usable or hostile
        ("", "", None),
        ("/", "", None),
        ("/kubepods/../../etc", "", None),
        ("/kubepods/./x", "", None),
        ("/kubepods/a\0b", "", None),
        ("a.slice:cri:../x", "", None),
        ("a.slice:cri:", "", None),
        (f":cri-containerd:{C1}", "/kubepods/../..", None),
    ],
)
def test_container_relpath(cgroup_path: str, parent: str, rel: str | None) -> None:
    assert container_relpath(cgroup_path, parent) == rel


def test_pod_relpaths_guess_every_qos_and_driver_without_a_parent() -> None:
    guesses = pod_relpaths("", UID)
    assert f"kubepods/besteffort/pod{UID}" in guesses
    assert f"kubepods/burstable/pod{UID}" in guesses
    assert f"kubepods/pod{UID}" in guesses
    assert SYSTEMD_POD in guesses
    assert pod_relpaths(f"kubepods-besteffort-pod{UNIT}.slice", UID) == [SYSTEMD_POD]
    assert pod_relpaths("/kubepods/../../", UID) == []


# (fixture, cgroup version, container cgroup_path, pod cgroup_parent, container id, TIDs)
LAYOUTS = [
    (
        "cgroup.v2.systemd",
        2,
        f"kubepods-besteffort-pod{UNIT}.slice:cri-containerd:{C1}",
        f"kubepods-besteffort-pod{UNIT}.slice",
        C1,
        {2001, 2002, 2003},
    ),
    (
        "cgroup.v2.systemd",  # threads only in a child cgroup (v2 no-internal-process rule)
        2,
        f"kubepods-besteffort-pod{UNIT}.slice:cri-containerd:{C2}",
        f"kubepods-besteffort-pod{UNIT}.slice",
        C2,
        {2101, 2102},
    ),
    (
        "cgroup.v2.cgroupfs",
        2,
        f"/kubepods/besteffort/pod{UID}/{C1}",
        f"/kubepods/besteffort/pod{UID}",
        C1,
        {3001, 3002},
    ),
    (
        "cgroup.v2.cgroupfs",  # derived path missing: found by searching for the id
        2,
        f"/kubepods/besteffort/pod{UID}/{C3}",
        f"/kubepods/besteffort/pod{UID}",
        C3,
        {3301},
    ),
    (
        "cgroup.v1.cgroupfs",
        1,
        f"/kubepods/burstable/pod{UID}/{C1}",
        f"/kubepods/burstable/pod{UID}",
        C1,
        {4001, 4002, 4003, 4004},
    ),
    (
        "cgroup.v1.cgroupfs",  # no parent given: the pod is found by guessing its place
        1,
        f"/kubepods/burstable/pod{UID}/{C2}",
        "",
        C2,
        {4101},
    ),
    (
        "cgroup.v1.systemd",
        1,
        f"kubepods-burstable-pod{UNIT}.slice:cri-containerd:{C1}",
        f"kubepods-burstable-pod{UNIT}.slice",
        C1,
        {5001, 5002},
    ),
]


@pytest.mark.parametrize(("tree", "version", "cgroup_path", "parent", "cid", "tids"), LAYOUTS)
def test_layouts(
    tree: str, version: int, cgroup_path: str, parent: str, cid: str, tids: set[int]
) -> None:
    reader = CgroupReader(str(DATA / tree))
    assert reader.layout.version == version
    pod_dir = reader.find_pod(parent, UID)
    assert pod_dir is not None and (UNIT in pod_dir or UID in pod_dir)
    directory = reader.find_container(cgroup_path, cid, parent, pod_dir)
    assert directory is not None and cid in directory
    assert reader.threads(directory) == tids


def test_v1_prefers_the_pids_hierarchy_and_can_be_told_another() -> None:
    root = str(DATA / "cgroup.v1.cgroupfs")
    assert detect_layout(root).base == f"{root}/pids"
    assert detect_layout(root, "cpu,cpuacct").base == f"{root}/cpu,cpuacct"
    assert detect_layout(root).threads_file == "tasks"
    v2 = detect_layout(str(DATA / "cgroup.v2.cgroupfs"))
    assert (v2.version, v2.threads_file) == (2, "cgroup.threads")


def test_no_cgroups_below_root(tmp_path: Path) -> None:
    with pytest.raises(CgroupsUnavailable):
        detect_layout(str(tmp_path))


def test_short_ids_are_not_searched_for() -> None:
    reader = CgroupReader(str(DATA / "cgroup.v2.cgroupfs"))
    pod_dir = reader.find_pod(f"/kubepods/besteffort/pod{UID}", UID)
    assert reader.find_container("/nope/c3", "c3", "", pod_dir) is None
    assert reader.find_container("/nope/x", C3, "", None) is None  # no pod dir: no search


def test_missing_cgroup_is_gone_and_a_vanishing_child_is_skipped(tmp_path: Path) -> None:
    shutil.copytree(DATA / "cgroup.v2.systemd", tmp_path / "cg")
    reader = CgroupReader(str(tmp_path / "cg"))
    scope = tmp_path / "cg" / SYSTEMD_POD / f"cri-containerd-{C2}.scope"
    shutil.rmtree(scope / "init.scope")
    assert reader.threads(str(scope)) == set()
    shutil.rmtree(scope)
    assert not reader.exists(str(scope))
    with pytest.raises(CgroupGone):
        reader.threads(str(scope))


# -- a real cgroup v1 hierarchy ----------------------------------------------------------

REAL_ROOT = "/sys/fs/cgroup"
THREADED_CHILD = """
import sys, threading
ev = threading.Event()
for _ in range(4):
    threading.Thread(target=ev.wait, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def _real_v1_hierarchy() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("pids", "cpu"):
        if os.path.exists(f"{REAL_ROOT}/{name}/tasks"):
            return name
    return None


@pytest.fixture
def real_pod() -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """A 5-thread process in /sys/fs/cgroup/<hierarchy>/rp-test-*/pod<uid>/<cid>."""
    hierarchy = _real_v1_hierarchy()
    if hierarchy is None:
        unavailable("needs root and a cgroup v1 pids or cpu hierarchy at /sys/fs/cgroup")
    top = f"{REAL_ROOT}/{hierarchy}/rp-test-{uuid.uuid4().hex[:8]}"
    rel_pod = f"{os.path.basename(top)}/pod{UID}"
    container_dir = f"{REAL_ROOT}/{hierarchy}/{rel_pod}/{C1}"
    os.makedirs(container_dir)
    child = subprocess.Popen(
        [sys.executable, "-c", THREADED_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        with open(f"{container_dir}/cgroup.procs", "w") as f:
            f.write(str(child.pid))  # v1: moves every thread of the process
        yield hierarchy, rel_pod, child
    finally:
        child.kill()
        child.wait()
        for d in (container_dir, os.path.dirname(container_dir), top):
            os.rmdir(d)  # empty once the process is reaped


@pytest.mark.slow
@pytest.mark.root
def test_real_v1_cgroup_threads_reach_the_group(
    real_pod: tuple[str, str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    hierarchy, rel_pod, child = real_pod
    reader = CgroupReader(REAL_ROOT, hierarchy)
    expected = {int(t) for t in os.listdir(f"/proc/{child.pid}/task")}
    assert len(expected) == 5
    pod_dir = reader.find_pod(f"/{rel_pod}", UID)
    directory = reader.find_container(f"/{rel_pod}/{C1}", C1, f"/{rel_pod}", pod_dir)
    assert directory is not None
    assert reader.threads(directory) == expected

    (tmp_path / "mon_groups").mkdir()
    core = Reconciler(ResctrlGroups(PlainDirResctrlOps(str(tmp_path))), reader)
    out = core.handle(
        LifecycleSnapshot(
            (PodUp(UID, "ns", "p", f"/{rel_pod}"),),
            (ContainerUp(C1, UID, f"/{rel_pod}/{C1}", child.pid),),
        ),
        now=0.0,
    )
    written = {
        int(t) for t in (tmp_path / "mon_groups" / f"pod_{UID}" / "tasks").read_text().split()
    }
    assert written == expected
    state = out[0].states[0]  # type: ignore[union-attr]
    assert (state.total_containers, state.reconciled_containers) == (1, 1)
