"""EmulatedCgroups: layouts the production reader recognises, thread lists that follow
real processes (threads, children, exits), removal and the background refresher."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from resctrl_pipeline.cgroups import CgroupReader, container_relpath
from resctrl_pipeline.emulator.cgroupfs import EmulatedCgroups
from tests.emulator.support import Child, wait_gone
from tests.support import poll_until

POD = "kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CID = "a1" * 32


def lines(path: str) -> set[int]:
    with open(path) as f:
        return {int(t) for t in f.read().split()}


@pytest.mark.slow
@pytest.mark.parametrize(("version", "threads_file"), [(2, "cgroup.threads"), (1, "tasks")])
def test_the_production_reader_sees_every_thread_of_an_attached_process(
    tmp_path: Path, spawn: Callable[[], Child], version: Literal[1, 2], threads_file: str
) -> None:
    child = spawn()
    extra = int(child.ask("thread"))
    cgroups = EmulatedCgroups(tmp_path / "cg", version=version)
    rel = container_relpath(f"/{POD}/{CID}")
    assert rel == f"{POD}/{CID}"
    cgroups.attach(rel, [child.pid])
    reader = CgroupReader(str(tmp_path / "cg"))
    assert reader.layout.version == version
    assert reader.layout.threads_file == threads_file
    pod_dir = reader.find_pod(f"/{POD}", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    container_dir = reader.find_container(f"/{POD}/{CID}", CID, f"/{POD}", pod_dir)
    assert container_dir is not None
    assert reader.threads(container_dir) == set(child.tids())
    assert extra in reader.threads(container_dir)
    for directory in cgroups.directories(rel):
        assert lines(os.path.join(directory, "cgroup.procs")) == {child.pid}
        assert lines(os.path.join(os.path.dirname(directory), "cgroup.procs")) == set()


@pytest.mark.slow
def test_refresh_follows_new_threads_children_and_exits(
    tmp_path: Path, spawn: Callable[[], Child]
) -> None:
    child = spawn()
    cgroups = EmulatedCgroups(tmp_path, version=2)
    cgroups.attach("pod/c", [child.pid])
    threads = os.path.join(cgroups.directories("pod/c")[0], "cgroup.threads")
    procs = os.path.join(cgroups.directories("pod/c")[0], "cgroup.procs")
    extra = int(child.ask("thread"))
    grandchild = int(child.ask("fork"))
    cgroups.refresh()
    assert lines(threads) == set(child.tids()) | {grandchild}
    assert extra in lines(threads)
    assert lines(procs) == {child.pid, grandchild}
    child.ask(f"end {extra}")
    wait_gone(extra)
    cgroups.refresh()
    assert extra not in lines(threads)
    child.kill()
    cgroups.refresh()
    assert lines(threads) == set()


@pytest.mark.slow
def test_a_descendant_attached_elsewhere_belongs_there_and_attach_moves(
    tmp_path: Path, spawn: Callable[[], Child]
) -> None:
    child = spawn()
    grandchild = int(child.ask("fork"))
    cgroups = EmulatedCgroups(tmp_path, version=1, hierarchies=("pids",))
    cgroups.attach("a", [child.pid])
    cgroups.attach("b", [grandchild])

    def tasks(rel: str) -> set[int]:
        return lines(os.path.join(cgroups.directories(rel)[0], "tasks"))

    assert grandchild not in tasks("a")
    assert tasks("b") == {grandchild}
    cgroups.attach("b", [child.pid])
    assert tasks("a") == set()
    assert grandchild in tasks("b") and child.pid in tasks("b")


def test_remove_deletes_the_cgroup_in_every_hierarchy(tmp_path: Path) -> None:
    cgroups = EmulatedCgroups(tmp_path, version=1, hierarchies=("pids", "cpu,cpuacct"))
    cgroups.attach("kubepods/pod1/c1", [os.getpid()])
    cgroups.create("kubepods/pod1/c2")
    dirs = cgroups.directories("kubepods/pod1")
    assert [os.path.basename(os.path.dirname(os.path.dirname(d))) for d in dirs] == [
        "pids",
        "cpu,cpuacct",
    ]
    cgroups.remove("kubepods/pod1")
    assert not any(os.path.exists(d) for d in dirs)
    cgroups.refresh()  # nothing attached any more: no error, nothing re-created
    assert not any(os.path.exists(d) for d in dirs)
    with pytest.raises(ValueError):
        cgroups.create("../escape")


@pytest.mark.slow
def test_the_background_refresher_picks_up_new_threads(
    tmp_path: Path, spawn: Callable[[], Child]
) -> None:
    child = spawn()
    with EmulatedCgroups(tmp_path, version=2) as cgroups:
        cgroups.attach("c", [child.pid])
        cgroups.start(interval=0.02)
        extra = int(child.ask("thread"))
        threads = os.path.join(cgroups.directories("c")[0], "cgroup.threads")
        poll_until(lambda: extra in lines(threads), timeout=5.0, what="refreshed thread list")
    assert cgroups._refresher is None
