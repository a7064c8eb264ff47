"""The resctrl write side: errno classification, the os seam, the in-memory fake."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from resctrl_pipeline.errors import ResctrlUnavailable
from resctrl_pipeline.podid import InvalidPodUid
from resctrl_pipeline.resctrl.errnos import (
    GroupVanished,
    NoFreeRmid,
    PermissionProblem,
    ResctrlWriteError,
    RmidsInLimbo,
    TaskRefused,
)
from resctrl_pipeline.resctrl.groups import ResctrlGroups, place_init_pid
from resctrl_pipeline.resctrl.ops import OsResctrlOps
from resctrl_pipeline.resctrl.plaindir import PlainDirResctrlOps
from tests.memory_resctrl import MemoryResctrlOps

DATA = Path(__file__).parent / "data"
LIVE = "pod_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


class RaisingOps(MemoryResctrlOps):
    """The in-memory fake with one operation failing with one errno, every time.

    The os-backed seam cannot make a tmp dir produce kernel errnos, so the
    classification is tested through the seam itself.
    """

    def __init__(self, op: str, code: int) -> None:
        super().__init__(root="/r")
        self.groups["g"] = set()
        self.spawn(7)
        self.status = "Can't move task to different control group"
        self.fail(op, code, times=100)


def _call(op: str) -> Callable[[ResctrlGroups], object]:
    return {
        "mkdir": lambda g: g.create("g"),
        "rmdir": lambda g: g.remove("g"),
        "list_groups": lambda g: g.list_groups(),
        "read_tasks": lambda g: g.tasks("g"),
        "write_tid": lambda g: g.add_task("g", 7),
    }[op]


# (operation, errno, expected return value or exception class)
ERRNO_TABLE: list[tuple[str, int, object]] = [
    ("mkdir", errno.EEXIST, False),
    ("mkdir", errno.ENOSPC, NoFreeRmid),
    ("mkdir", errno.EBUSY, RmidsInLimbo),
    ("mkdir", errno.EACCES, PermissionProblem),
    ("mkdir", errno.EPERM, PermissionProblem),
    ("mkdir", errno.ENOENT, ResctrlUnavailable),
    ("mkdir", errno.EIO, ResctrlWriteError),
    ("rmdir", errno.ENOENT, False),
    ("rmdir", errno.EACCES, PermissionProblem),
    ("rmdir", errno.EPERM, PermissionProblem),
    ("rmdir", errno.EBUSY, ResctrlWriteError),
    ("list_groups", errno.ENOENT, ResctrlUnavailable),
    ("list_groups", errno.EACCES, PermissionProblem),
    ("read_tasks", errno.ENOENT, GroupVanished),
    ("read_tasks", errno.EACCES, PermissionProblem),
    ("read_tasks", errno.EIO, ResctrlWriteError),
    ("write_tid", errno.ESRCH, False),
    ("write_tid", errno.EINVAL, TaskRefused),
    ("write_tid", errno.ENOENT, GroupVanished),
    ("write_tid", errno.EACCES, PermissionProblem),
    ("write_tid", errno.EPERM, PermissionProblem),
    ("write_tid", errno.ENOSPC, ResctrlWriteError),
    # "Gone" errnos of kernfs: a group being torn down, resctrl unmounted under us.
    ("mkdir", errno.ENODEV, ResctrlUnavailable),
    ("rmdir", errno.ENODEV, False),
    ("list_groups", errno.ENODEV, ResctrlUnavailable),
    ("read_tasks", errno.ENODEV, GroupVanished),
    ("read_tasks", errno.ESRCH, GroupVanished),
    ("read_tasks", errno.EINVAL, GroupVanished),
    ("write_tid", errno.ENODEV, GroupVanished),
]


@pytest.mark.parametrize(("op", "code", "expected"), ERRNO_TABLE)
def test_errno_table(op: str, code: int, expected: object) -> None:
    groups = ResctrlGroups(RaisingOps(op, code))
    if isinstance(expected, type):
        with pytest.raises(expected) as info:
            _call(op)(groups)
        cause = info.value.__cause__
        assert isinstance(cause, OSError) and cause.errno == code  # chain kept
        if isinstance(info.value, ResctrlWriteError):
            assert info.value.errno == code
            assert info.value.path.startswith("/r/mon_groups")
    else:
        assert _call(op)(groups) == expected


def test_specific_classes_do_not_leak_into_other_operations() -> None:
    # ENOSPC/EBUSY mean "no RMID" only for mkdir; elsewhere they are plain errors.
    with pytest.raises(ResctrlWriteError) as info:
        ResctrlGroups(RaisingOps("rmdir", errno.EBUSY)).remove("g")
    assert not isinstance(info.value, RmidsInLimbo)


def test_einval_carries_last_cmd_status() -> None:
    with pytest.raises(TaskRefused) as info:
        ResctrlGroups(RaisingOps("write_tid", errno.EINVAL)).add_task("g", 7)
    assert info.value.tid == 7
    assert info.value.status == "injected failure"
    assert "injected failure" in str(info.value)


def test_unreadable_last_cmd_status_does_not_hide_the_refusal() -> None:
    ops = RaisingOps("write_tid", errno.EINVAL)
    ops.fail("read_info", errno.EACCES)
    with pytest.raises(TaskRefused) as info:
        ResctrlGroups(ops).add_task("g", 7)
    assert info.value.status == ""


@pytest.mark.parametrize("tid", [0, -1])
def test_tid_zero_would_move_the_writer_and_is_refused(tid: int) -> None:
    ops = MemoryResctrlOps()
    ops.groups["g"] = set()
    with pytest.raises(ValueError):
        ResctrlGroups(ops).add_task("g", tid)
    assert ops.mutations == 0


# -- the in-memory fake behaves like the kernel ------------------------------------------


def test_fake_rmid_capacity_then_limbo_then_free() -> None:
    ops = MemoryResctrlOps(num_rmids=3)  # root + 2 groups
    groups = ResctrlGroups(ops)
    assert groups.create("a") and groups.create("b")
    with pytest.raises(NoFreeRmid):
        groups.create("c")
    assert groups.remove("a")
    with pytest.raises(RmidsInLimbo):
        groups.create("c")
    ops.drain_limbo()
    assert groups.create("c")
    assert groups.num_rmids() == 3


def test_fake_moves_threads_between_groups_and_back_to_root_on_rmdir() -> None:
    ops = MemoryResctrlOps()
    groups = ResctrlGroups(ops)
    groups.create("a")
    groups.create("b")
    ops.spawn(10)
    assert groups.add_task("a", 10)
    assert groups.add_task("b", 10)
    assert groups.tasks("a") == set() and groups.tasks("b") == {10}
    groups.remove("b")
    assert ops.group_of(10) is None
    assert not groups.add_task("a", 99)  # no such thread: ESRCH
    with pytest.raises(GroupVanished):
        groups.add_task("b", 10)
    with pytest.raises(GroupVanished):
        groups.tasks("b")


# -- the os seam on real directories -------------------------------------------------------


@pytest.fixture
def full_tree(tmp_path: Path) -> str:
    """A copy of tests/data/resctrl.full (KEEP_RESCTRL_TMP=1 prints where it is)."""
    root = tmp_path / "resctrl"
    shutil.copytree(DATA / "resctrl.full", root)
    if os.environ.get("KEEP_RESCTRL_TMP"):
        print(f"resctrl fixture copy: {root}")
    return str(root)


def test_os_seam_reads_the_fixture_tree(full_tree: str) -> None:
    groups = ResctrlGroups(OsResctrlOps(full_tree))
    assert sorted(groups.list_groups()) == sorted(
        [LIVE, "pod_deadbeef-0000-4000-8000-000000000001", "foreign_group"]
    )
    assert groups.tasks(LIVE) == {1001, 1002}
    assert groups.num_rmids() == 256
    assert groups.last_cmd_status() == "ok"
    assert groups.path(LIVE) == f"{full_tree}/mon_groups/{LIVE}"
    with pytest.raises(GroupVanished):
        groups.tasks("pod_nope")
    with pytest.raises(ResctrlUnavailable):
        ResctrlGroups(OsResctrlOps(str(DATA / "resctrl.nomon"))).list_groups()
    assert ResctrlGroups(OsResctrlOps(str(DATA / "resctrl.nomon"))).num_rmids() is None


def test_os_seam_writes_one_id_per_write_call(
    full_tree: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    OsResctrlOps(full_tree).write_tid(LIVE, 4321)
    assert writes == [b"4321"]  # no newline, no batching: what every kernel accepts


def test_plain_dir_seam_emulates_mkdir_rmdir_and_task_lines(tmp_path: Path) -> None:
    (tmp_path / "mon_groups").mkdir()
    groups = ResctrlGroups(PlainDirResctrlOps(str(tmp_path)))
    assert groups.create("pod_x") is True
    assert groups.create("pod_x") is False
    assert groups.tasks("pod_x") == set()
    assert groups.add_task("pod_x", 5) and groups.add_task("pod_x", 6)
    assert groups.tasks("pod_x") == {5, 6}
    assert groups.remove("pod_x") is True
    assert groups.remove("pod_x") is False
    with pytest.raises(GroupVanished):
        groups.add_task("pod_x", 5)


def test_garbage_lines_in_tasks_are_not_thread_ids(tmp_path: Path) -> None:
    (tmp_path / "mon_groups" / "g").mkdir(parents=True)
    tasks = tmp_path / "mon_groups" / "g" / "tasks"
    tasks.write_text("12\n0\n-3\nabc\n\n 13 \n")
    assert ResctrlGroups(OsResctrlOps(str(tmp_path))).tasks("g") == {12, 13}
    tasks.write_bytes("14\n\u0661\u0662\n\u00b2\n".encode() + b"\xff\xfe\n15\n")
    assert ResctrlGroups(OsResctrlOps(str(tmp_path))).tasks("g") == {14, 15}


# -- the StartContainer fast path ---------------------------------------------------------


def test_place_init_pid_creates_the_group_and_writes_once(tmp_path: Path) -> None:
    (tmp_path / "mon_groups").mkdir()
    ops = PlainDirResctrlOps(str(tmp_path))
    assert place_init_pid(str(tmp_path), "pod_", "abc-1", 4242, ops=ops)
    assert place_init_pid(str(tmp_path), "pod_", "abc-1", 4243, ops=ops)  # mkdir idempotent
    lines = (tmp_path / "mon_groups" / "pod_abc-1" / "tasks").read_text().split()
    assert lines == ["4242", "4243"]


def test_place_init_pid_default_seam_is_the_os(full_tree: str) -> None:
    # On a plain copy the write overwrites the file (the kernel would append): enough
    # to show the default seam writes below the given root.
    assert place_init_pid(full_tree, "pod_", LIVE[4:], 77)
    assert Path(full_tree, "mon_groups", LIVE, "tasks").read_text().startswith("77")


@pytest.mark.parametrize("uid", ["../../x", "a/b", "", "x\n", "x" * 64])
def test_place_init_pid_rejects_hostile_uids_before_touching_anything(uid: str) -> None:
    ops = MemoryResctrlOps()
    with pytest.raises(InvalidPodUid):
        place_init_pid("/r", "pod_", uid, 1, ops=ops)
    assert ops.mutations == 0 and not ops.groups


def test_place_init_pid_outcomes() -> None:
    ops = MemoryResctrlOps(num_rmids=2)
    ops.spawn(100)
    assert place_init_pid("/r", "pod_", "p1", 100, ops=ops) is True
    assert ops.group_of(100) == "pod_p1"
    assert place_init_pid("/r", "pod_", "p1", 101, ops=ops) is False  # exited: ESRCH
    with pytest.raises(NoFreeRmid):
        place_init_pid("/r", "pod_", "p2", 100, ops=ops)
    with pytest.raises(ValueError):
        place_init_pid("/r", "pod_", "p1", 0, ops=ops)
