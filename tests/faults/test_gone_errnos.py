"""A cgroup or group that goes away while it is read: every errno the kernel may
choose for it (ENOENT, ENODEV, ESRCH, EINVAL) is the typed "gone" outcome, never an
OSError that escapes. Real reads through FUSE mounts whose server raises the errnos
(the emulated resctrl, and a read-only mount of the emulated cgroup tree)."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from resctrl_pipeline.cgroups import CgroupGone, CgroupReader, CgroupUnreadable
from resctrl_pipeline.emulator.cgroupfs import EmulatedCgroups
from resctrl_pipeline.errors import ResctrlGroupGone, ResctrlReadError
from resctrl_pipeline.resctrl.mondata import PreadReader
from tests.prerequisites import missing, requires

pytestmark = [pytest.mark.slow, requires("fuse")]

GONE = (errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EINVAL)

if not missing("fuse"):
    from resctrl_pipeline.emulator.cgroupmount import CgroupMount
    from resctrl_pipeline.emulator.resctrlfs import EmulatedResctrl


@pytest.fixture
def cgroup_mount(tmp_path: str) -> Iterator[tuple[EmulatedCgroups, CgroupMount]]:
    cgroups = EmulatedCgroups(os.path.join(tmp_path, "src"))
    mount = CgroupMount(cgroups.root, os.path.join(tmp_path, "mnt"))
    mount.start()
    try:
        yield cgroups, mount
    finally:
        mount.stop()


def test_cgroup_reader_turns_every_gone_errno_into_cgroup_gone(
    cgroup_mount: tuple[EmulatedCgroups, CgroupMount],
) -> None:
    cgroups, mount = cgroup_mount
    cgroups.attach("kubepods/podx/c1", [os.getpid()])
    reader = CgroupReader(mount.mountpoint)
    directory = os.path.join(mount.mountpoint, "kubepods/podx/c1")
    assert os.getpid() in reader.threads(directory)
    for code in GONE:
        mount.fail_next("cgroup.threads", code)
        with pytest.raises(CgroupGone):
            reader.threads(directory)
    mount.fail_next("cgroup.threads", errno.EIO)  # not "gone": its own typed error
    with pytest.raises(CgroupUnreadable, match="Input/output error"):
        reader.threads(directory)
    assert os.getpid() in reader.threads(directory)  # and back once it reads again
    assert mount.pending_faults() == {}


def test_a_child_cgroup_gone_mid_walk_only_loses_its_own_threads(
    cgroup_mount: tuple[EmulatedCgroups, CgroupMount],
) -> None:
    cgroups, mount = cgroup_mount
    # A container that made cgroups of its own: its threads live only in them (v2).
    other = subprocess.Popen(["sleep", "60"])
    try:
        cgroups.attach("kubepods/pody/c1/a", [os.getpid()])
        cgroups.attach("kubepods/pody/c1/b", [other.pid])
        reader = CgroupReader(mount.mountpoint)
        directory = os.path.join(mount.mountpoint, "kubepods/pody/c1")
        assert {os.getpid(), other.pid} <= reader.threads(directory)
        for code in GONE:
            mount.fail_next("kubepods/pody/c1/b/cgroup.threads", code)
            tids = reader.threads(directory)
            assert os.getpid() in tids and other.pid not in tids
        assert mount.pending_faults() == {}
    finally:
        other.kill()
        other.wait()


@pytest.fixture
def resctrl(tmp_path: str) -> Iterator[EmulatedResctrl]:
    with EmulatedResctrl(os.path.join(tmp_path, "resctrl"), domains=(0, 1)) as fs:
        yield fs


def test_counter_reads_turn_every_gone_errno_into_group_gone(resctrl: EmulatedResctrl) -> None:
    group = os.path.join(resctrl.mountpoint, "mon_groups", "pod_a")
    os.mkdir(group)
    reader = PreadReader()
    assert reader.read(group).llc_occupancy >= 0
    tree = resctrl.tree
    for code in GONE:
        # The quick read, the careful one, and one more with fresh descriptors.
        tree.fail_next("read_counter", code, times=3)
        with pytest.raises(ResctrlGroupGone):
            reader.read(group)
        assert not tree.pending_faults()
        assert reader.read(group).llc_occupancy >= 0  # the next tick reads it again
    # Resolving the domains of a group that is going away (not ENOENT: FUSE turns a
    # readdir ENOENT into an empty listing, which is "missing" domains).
    for code in GONE[1:]:
        tree.fail_next("readdir", code)
        with pytest.raises(ResctrlGroupGone):
            PreadReader().read(group)
    tree.fail_next("read_counter", errno.EIO, times=3)
    with pytest.raises(ResctrlReadError) as err:
        reader.read(group)
    assert err.value.reason == "io"
    reader.close()


def test_a_stalled_mkdir_holds_only_itself(resctrl: EmulatedResctrl) -> None:
    """The emulator's stall: the held request waits, the others are served."""
    tree = resctrl.tree
    tree.stall(("mkdir",), 3.0)
    done = threading.Event()

    def make() -> None:
        os.mkdir(os.path.join(resctrl.mountpoint, "mon_groups", "pod_slow"))
        done.set()

    worker = threading.Thread(target=make, daemon=True)
    worker.start()
    # Served while the mkdir is held: a counter of the default group.
    with open(os.path.join(resctrl.mountpoint, "mon_data", "mon_L3_00", "llc_occupancy")) as f:
        assert f.read().strip().isdigit()
    assert not done.is_set()
    worker.join(30)
    assert done.is_set() and "pod_slow" in tree.groups()
