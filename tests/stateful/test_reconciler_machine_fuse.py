"""The reconciler state machine over real syscalls: OsResctrlOps on the FUSE emulation.

The same :class:`~tests.stateful.test_reconciler_machine.ReconcilerMachine` as the
in-memory run, with :class:`~tests.stateful.fuse_kernel.FuseKernel` as its kernel
(real threads, errnos injected in the FUSE server); fewer examples, since every step
costs syscalls. ``RP_FUSE_MACHINE_EXAMPLES`` sets how many (default 50).

The mounted tests need root, /dev/fuse, fusermount3, libfuse3 and mfusepy; they are
skipped with the reason otherwise.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator

import pytest

from resctrl_pipeline.emulator.resctrltree import ResctrlTree
from resctrl_pipeline.resctrl.errnos import ResctrlWriteError, TaskRefused
from resctrl_pipeline.resctrl.groups import ResctrlGroups
from tests.prerequisites import missing, requires
from tests.stateful.test_reconciler_machine import PREFIX, run_machine
from tests.support import fuzz_examples

needs_fuse = requires("fuse")

if not missing("fuse"):
    from tests.stateful.fuse_kernel import FuseKernel


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


class Kernels:
    """Makes mounted kernels in one temporary directory, and remembers them."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.made: list[FuseKernel] = []

    def __call__(self) -> FuseKernel:
        path = os.path.join(self.directory, f"resctrl{len(self.made)}")
        self.made.append(FuseKernel(path, num_rmids=8))
        return self.made[-1]

    def mounted(self) -> list[str]:
        return [k.root for k in self.made if _mounted(k.root)]


@pytest.fixture
def kernels() -> Iterator[Kernels]:
    """Closes every kernel; fails if a mount or one of their threads is left."""
    with tempfile.TemporaryDirectory(prefix="rp-machine-", dir="/tmp") as d:
        made = Kernels(d)
        yield made
        for kernel in made.made:
            kernel.close()  # idempotent
        assert made.mounted() == []
        alive = [t for k in made.made for t in k.issued if os.path.exists(f"/proc/{t}")]
        assert not alive, f"threads left running: {alive}"


def errno_of(call: Callable[[], object]) -> int:
    with pytest.raises(OSError) as err:
        call()
    assert err.value.errno is not None
    return err.value.errno


def test_tree_fault_hook_without_a_mount() -> None:
    tree = ResctrlTree()
    tree.fail_next("mkdir", errno.EIO, times=2)
    tree.fail_next("mkdir", errno.EACCES)
    tree.mkdir("/mon_groups/a")  # the tree's own methods never spend a fault
    assert tree.pending_faults() == {"mkdir": [errno.EIO, errno.EIO, errno.EACCES]}
    for code in (errno.EIO, errno.EIO, errno.EACCES):
        assert errno_of(lambda: tree.take_fault("mkdir")) == code
    assert tree.last_cmd_status == "emulator: injected EACCES\n"
    tree.take_fault("mkdir")  # nothing pending: no error
    assert tree.pending_faults() == {}
    with pytest.raises(ValueError):
        tree.fail_next("open", errno.EIO)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tree.fail_next("mkdir", 0)
    with pytest.raises(ValueError):
        tree.fail_next("mkdir", errno.EIO, times=0)


@needs_fuse
@pytest.mark.root
@pytest.mark.slow
def test_injected_faults_come_back_through_the_mount(
    kernels: Kernels,
) -> None:
    kernel = kernels()
    groups = ResctrlGroups(kernel)
    kernel.mkdir("g")
    tid = kernel.start_thread()

    kernel.fail("mkdir", errno.EIO, times=2)
    assert errno_of(lambda: kernel.mkdir("g")) == errno.EEXIST  # the VFS answers: unspent
    assert kernel.faults == {"mkdir": [errno.EIO, errno.EIO]}
    assert errno_of(lambda: kernel.mkdir("h")) == errno.EIO
    assert errno_of(lambda: kernel.mkdir("h")) == errno.EIO
    kernel.mkdir("h")
    assert kernel.faults == {}

    kernel.fail("write_tid", errno.EINVAL)
    with pytest.raises(TaskRefused) as refused:
        groups.add_task("g", tid)
    assert refused.value.status == "emulator: injected EINVAL"
    assert groups.add_task("g", tid) and kernel.group_of(tid) == "g"

    calls: list[tuple[str, Callable[[], object]]] = [
        ("read_tasks", lambda: groups.tasks("g")),
        ("list_groups", groups.list_groups),
        ("rmdir", lambda: groups.remove("h")),
    ]
    for op, call in calls:
        kernel.fail(op, errno.EACCES)
        with pytest.raises(ResctrlWriteError) as err:
            call()
        assert err.value.errno == errno.EACCES, op
        assert kernel.faults == {}, op
    assert groups.tasks("g") == {tid} and sorted(groups.list_groups()) == ["g", "h"]

    # The machine's own controls never spend a fault.
    kernel.fail("write_tid", errno.EIO)
    other = kernel.start_thread("g")
    assert kernel.groups == {"g": {tid, other}, "h": set()}
    assert kernel.faults == {"write_tid": [errno.EIO]}


@needs_fuse
@pytest.mark.root
@pytest.mark.slow
def test_threads_rmids_and_limbo_are_the_emulators(kernels: Kernels) -> None:
    kernel = kernels()
    groups = ResctrlGroups(kernel)
    assert groups.num_rmids() == 8 and kernel.free_rmids() == 7
    kernel.mkdir("a")
    tid = kernel.start_thread("a")
    assert groups.tasks("a") == {tid} and kernel.group_of(tid) == "a"
    assert os.path.exists(f"/proc/{tid}")

    kernel.exit(tid)
    assert not os.path.exists(f"/proc/{tid}")
    assert groups.tasks("a") == set()
    mutations = kernel.mutations
    assert groups.add_task("a", tid) is False  # ESRCH from the emulator
    assert kernel.mutations == mutations

    kernel.num_rmids = 3
    assert groups.num_rmids() == 3 and kernel.free_rmids() == 1
    kernel.mkdir(PREFIX + "b")
    assert kernel.free_rmids() == 0
    assert errno_of(lambda: kernel.mkdir(PREFIX + "c")) == errno.ENOSPC
    kernel.rmdir(PREFIX + "b")
    assert kernel.free_rmids() == 0  # in limbo until the machine drains it
    assert errno_of(lambda: kernel.mkdir(PREFIX + "c")) == errno.EBUSY
    kernel.drain_limbo()
    assert kernel.free_rmids() == 1
    kernel.mkdir(PREFIX + "c")
    assert kernel.mutations == mutations + 3


@needs_fuse
@pytest.mark.root
@pytest.mark.slow
def test_reconciler_against_the_fuse_emulator(kernels: Kernels) -> None:
    run_machine(
        kernels,
        max_examples=int(os.environ.get("RP_FUSE_MACHINE_EXAMPLES", fuzz_examples(50))),
        steps=30,
    )
    assert len(kernels.made) >= 2
    assert kernels.mounted() == [], "the machine's teardown left mounts"
