"""A Hypothesis state machine driving the reconciler core against a trivial model.

The world: a container runtime (pods, containers, threads that fork, exec and exit),
a listener that may lose messages, a resctrl kernel with few RMIDs (ENOSPC, EBUSY
limbo) and injected failures, and reconciler restarts over the same kernel. The model
is plain sets: what runs, and what the reconciler has been told.

The kernel is a parameter (:class:`FakeKernel`): the in-memory fake here
(:class:`MemoryKernel`), the FUSE emulation through ``fuse_kernel.FuseKernel`` in
``test_reconciler_machine_fuse.py``. The kernel hands out thread ids, so a kernel of
real threads can give real ones.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable, Mapping
from typing import Protocol

from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from resctrl_pipeline.cgroups import CgroupGone
from resctrl_pipeline.messages import (
    ContainerDown,
    ContainerUp,
    GroupGone,
    GroupSnapshot,
    GroupState,
    LifecycleSnapshot,
    PodDown,
    PodUp,
)
from resctrl_pipeline.reconcile import GroupMessage, LifecycleMessage, Reconciler
from resctrl_pipeline.resctrl.errnos import ResctrlWriteError
from resctrl_pipeline.resctrl.groups import ResctrlGroups, place_init_pid
from resctrl_pipeline.resctrl.ops import ResctrlOps
from tests.memory_resctrl import MemoryResctrlOps

PREFIX = "pod_"
RETRY = 10.0
FOREIGN = {"foreign_a": 2, "other-tool": 1}  # group -> its threads; never ours
HOSTILE_UIDS = ["..", "../x", "a/b", "", "a\0", "x\n", "u" * 64, "ü"]


class FakeKernel(ResctrlOps, Protocol):
    """A resctrl kernel the machine can steer: the reconciler's seam plus controls."""

    num_rmids: int  # the RMID limit (root group included); settable

    @property
    def mutations(self) -> int:
        """Successful mkdir, rmdir and TID writes through the ResctrlOps methods."""
        ...

    @property
    def faults(self) -> Mapping[str, list[int]]:
        """Injected errnos still pending, per ResctrlOps method name."""
        ...

    @property
    def groups(self) -> dict[str, set[int]]:
        """Every mon group and its live TIDs, read without faults."""
        ...

    def start_thread(self, group: str | None = None) -> int:
        """A new live thread in ``group`` (None: the root group); returns its TID."""
        ...

    def exit(self, tid: int) -> None:
        """The thread ends: it leaves its group, writing its TID gives ESRCH (again: no-op)."""
        ...

    def group_of(self, tid: int) -> str | None: ...
    def drain_limbo(self) -> None: ...
    def free_rmids(self) -> int: ...
    def fail(self, op: str, code: int, times: int = 1) -> None: ...
    def close(self) -> None: ...


class FakeCgroups:
    """CgroupView over dicts: pod uid -> container id -> TIDs."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, set[int]]] = {}

    def find_pod(self, cgroup_parent: str, pod_uid: str) -> str | None:
        return f"/cg/{pod_uid}" if pod_uid in self.pods else None

    def find_container(
        self, cgroup_path: str, container_id: str, cgroup_parent: str, pod_dir: str | None
    ) -> str | None:
        return cgroup_path if self.exists(cgroup_path) else None

    def exists(self, directory: str) -> bool:
        parts = directory.split("/")[2:]
        pod = self.pods.get(parts[0]) if parts else None
        return pod is not None and (len(parts) == 1 or parts[1] in pod)

    def threads(self, directory: str) -> set[int]:
        if not self.exists(directory):
            raise CgroupGone(directory)
        _, _, uid, cid = directory.split("/")
        return set(self.pods[uid][cid])


class MemoryKernel(MemoryResctrlOps):
    """:class:`MemoryResctrlOps` with the rest of :class:`FakeKernel`: thread ids."""

    def __init__(self, num_rmids: int = 8) -> None:
        super().__init__("/sys/fs/resctrl", num_rmids=num_rmids)
        self._tids = itertools.count(1)

    def start_thread(self, group: str | None = None) -> int:
        tid = next(self._tids)
        self.spawn(tid, group)
        return tid

    def close(self) -> None:
        pass


def memory_kernel() -> FakeKernel:
    return MemoryKernel(num_rmids=8)


class ReconcilerMachine(RuleBasedStateMachine):
    """Runs :class:`Reconciler` in a lossy world; see the module docstring."""

    def __init__(self, kernel_factory: Callable[[], FakeKernel] = memory_kernel) -> None:
        super().__init__()
        self.kernel = kernel_factory()
        try:
            self.foreign = self._foreign_groups()
        except BaseException:
            self.kernel.close()  # teardown() only runs for a machine that was built
            raise
        self.cg = FakeCgroups()
        self.ids = itertools.count(1000)
        self.now = 0.0
        self.told_pods: set[str] = set()
        self.told_containers: dict[str, str] = {}  # container id -> pod uid
        self.synced = False
        self.sampler: dict[str, GroupState] = {}  # the groups edge, as a consumer sees it
        # Orphans after each of the last clean passes (newest last): the grace is two
        # retry intervals, so an orphan seen by two passes is gone after the third.
        self.orphans_after_passes: list[set[str]] = []
        self.zombies: set[int] = set()  # exited, still listed by their cgroup
        self.core = self._new_core()

    def _foreign_groups(self) -> dict[str, set[int]]:
        """Another tool's groups, each holding threads: nothing may touch them."""
        foreign = {}
        for name, threads in FOREIGN.items():
            self.kernel.mkdir(name)
            foreign[name] = {self.kernel.start_thread(name) for _ in range(threads)}
        return foreign

    def teardown(self) -> None:
        self.kernel.close()

    def _new_core(self) -> Reconciler:
        return Reconciler(ResctrlGroups(self.kernel), self.cg, prefix=PREFIX, retry_interval=RETRY)

    # -- observing the kernel ----------------------------------------------------------

    def ours(self) -> dict[str, set[int]]:
        return {n: set(t) for n, t in self.kernel.groups.items() if n.startswith(PREFIX)}

    def pending_faults(self) -> int:
        return sum(len(v) for v in self.kernel.faults.values())

    def drive(self, call: Callable[[], list[GroupMessage]], may_remove: set[str]) -> None:
        """Call the core, feed its output to the sampler model, police early deletions."""
        before, synced = set(self.ours()), self.synced
        out = call()
        for msg in out:
            if isinstance(msg, GroupSnapshot):
                self.sampler = {s.pod_uid: s for s in msg.states}
            elif isinstance(msg, GroupState):
                self.sampler[msg.pod_uid] = msg
            elif isinstance(msg, GroupGone):
                self.sampler.pop(msg.pod_uid, None)
        if not synced:
            removed = before - set(self.ours())
            assert removed <= may_remove, f"removed {removed} before the first snapshot"

    def send(self, msg: LifecycleMessage, may_remove: set[str] | None = None) -> None:
        note(f"deliver {msg!r}")
        self.drive(lambda: self.core.handle(msg, self.now), may_remove or set())

    # -- the runtime -------------------------------------------------------------------

    @initialize(
        first_snapshot=st.booleans(),
        running=st.lists(st.lists(st.integers(1, 3), max_size=3), max_size=3),
    )
    def start(self, first_snapshot: bool, running: list[list[int]]) -> None:
        """The node may already run pods when the reconciler starts (``running``:
        threads per container, per pod); usually the listener's first snapshot, which
        lists them, arrives before anything else."""
        note(f"kernel: {self.kernel.num_rmids} RMIDs, foreign groups {sorted(FOREIGN)}")
        for containers in running:
            uid = self._add_pod()
            for threads in containers:
                self._add_container(uid, threads)
        if first_snapshot:
            self.send(self._snapshot())
            self.told_pods = set(self.cg.pods)
            self.told_containers = dict(self._containers())
            self.synced = True

    def _add_pod(self) -> str:
        uid = f"p{next(self.ids)}"
        self.cg.pods[uid] = {}
        return uid

    def _add_container(self, uid: str, threads: int) -> tuple[str, set[int]]:
        cid = f"c{next(self.ids)}"
        tids = {self.kernel.start_thread() for _ in range(threads)}
        self.cg.pods[uid][cid] = tids
        return cid, tids

    @rule(deliver=st.booleans())
    def start_pod(self, deliver: bool) -> None:
        uid = self._add_pod()
        if deliver:
            self.told_pods.add(uid)
            self.send(PodUp(uid, "ns", uid, f"/kubepods/pod{uid}"))

    @precondition(lambda self: self.cg.pods)
    @rule(data=st.data(), deliver=st.booleans())
    def remove_pod(self, data: st.DataObject, deliver: bool) -> None:
        uid = data.draw(st.sampled_from(sorted(self.cg.pods)))
        for tids in self.cg.pods.pop(uid).values():
            for tid in tids:
                self.kernel.exit(tid)
        if deliver:
            self.told_pods.discard(uid)
            self.told_containers = {c: u for c, u in self.told_containers.items() if u != uid}
            self.send(PodDown(uid), may_remove={PREFIX + uid})

    @precondition(lambda self: self.cg.pods)
    @rule(data=st.data(), threads=st.integers(1, 3), deliver=st.booleans(), fast=st.booleans())
    def start_container(self, data: st.DataObject, threads: int, deliver: bool, fast: bool) -> None:
        uid = data.draw(st.sampled_from(sorted(self.cg.pods)))
        cid, tids = self._add_container(uid, threads)
        if fast:  # the listener's StartContainer fast path; failures only counted
            try:
                place_init_pid(self.kernel.root, PREFIX, uid, min(tids), ops=self.kernel)
            except ResctrlWriteError as err:
                note(f"fast path failed: {err}")
        if deliver:
            self.told_containers[cid] = uid
            self.send(ContainerUp(cid, uid, f"/cg/{uid}/{cid}", min(tids)))

    def _containers(self) -> list[tuple[str, str]]:
        """(container id, pod uid) of every running container."""
        return sorted((cid, uid) for uid, cs in self.cg.pods.items() for cid in cs)

    @precondition(lambda self: self._containers())
    @rule(data=st.data(), deliver=st.booleans())
    def stop_container(self, data: st.DataObject, deliver: bool) -> None:
        cid, uid = data.draw(st.sampled_from(self._containers()))
        for tid in self.cg.pods[uid].pop(cid):
            self.kernel.exit(tid)
        if deliver:
            self.told_containers.pop(cid, None)
            self.send(ContainerDown(cid, uid))

    @precondition(lambda self: self._containers())
    @rule(data=st.data(), inherit=st.booleans())
    def new_thread(self, data: st.DataObject, inherit: bool) -> None:
        """A thread forks (inherits its creator's group) or a process is exec'd in."""
        cid, uid = data.draw(st.sampled_from(self._containers()))
        tids = self.cg.pods[uid][cid]
        parent = min(tids - self.zombies, default=None)
        group = self.kernel.group_of(parent) if inherit and parent is not None else None
        tids.add(self.kernel.start_thread(group))

    def _living(self) -> list[tuple[str, str, list[int]]]:
        """Containers with a thread that may exit (one always stays) and those threads."""
        found = []
        for cid, uid in self._containers():
            alive = sorted(self.cg.pods[uid][cid] - self.zombies)
            if len(alive) > 1:
                found.append((cid, uid, alive))
        return found

    @precondition(lambda self: self._living())
    @rule(data=st.data(), reaped=st.booleans())
    def thread_exits(self, data: st.DataObject, reaped: bool) -> None:
        """A thread exits; unreaped, its cgroup still lists it until the next pass."""
        cid, uid, alive = data.draw(st.sampled_from(self._living()))
        tid = data.draw(st.sampled_from(alive))
        self.kernel.exit(tid)
        if reaped:
            self.cg.pods[uid][cid].discard(tid)
        else:
            self.zombies.add(tid)

    # -- the kernel --------------------------------------------------------------------

    @rule(n=st.integers(1, 10))
    def rmid_capacity(self, n: int) -> None:
        self.kernel.num_rmids = n

    @rule()
    def limbo_drains(self) -> None:
        self.kernel.drain_limbo()

    @rule(
        fault=st.sampled_from(
            [
                ("write_tid", errno.EINVAL),
                ("write_tid", errno.EACCES),
                ("write_tid", errno.EIO),
                ("mkdir", errno.EACCES),
                ("mkdir", errno.EIO),
                ("rmdir", errno.EIO),
                ("read_tasks", errno.EIO),
                ("list_groups", errno.EIO),
            ]
        )
    )
    def inject_failure(self, fault: tuple[str, int]) -> None:
        self.kernel.fail(*fault)

    @precondition(lambda self: not self.kernel.faults.get("mkdir"))
    @rule()
    def stale_group_appears(self) -> None:
        """A prefix group of no pod: left by a crash, or a fast path for a lost pod."""
        if self.kernel.free_rmids() > 0:
            self.kernel.mkdir(f"{PREFIX}gone{next(self.ids)}")

    # -- the listener and the reconciler ------------------------------------------------

    def _snapshot(self) -> LifecycleSnapshot:
        pods = tuple(PodUp(u, "ns", u, f"/kubepods/pod{u}") for u in sorted(self.cg.pods))
        containers = tuple(
            ContainerUp(cid, uid, f"/cg/{uid}/{cid}", min(t) if t else 0)
            for cid, uid in self._containers()
            for t in [self.cg.pods[uid][cid]]
        )
        return LifecycleSnapshot(pods, containers)

    @rule()
    def snapshot_twice(self) -> None:
        """A fresh snapshot replaces the view; the same one again changes nothing."""
        snap = self._snapshot()
        gone = {PREFIX + u for u in self.told_pods if u not in self.cg.pods}
        faults = self.pending_faults()
        self.send(snap, may_remove=gone)
        self.told_pods = set(self.cg.pods)
        self.told_containers = {cid: uid for cid, uid in self._containers()}
        self.synced = True
        assert {s.pod_uid for s in self.core.snapshot().states} == self.told_pods
        if self.pending_faults() != faults:
            return  # a failed operation is rightly retried by the second delivery
        disk, mutations, view = self.ours(), self.kernel.mutations, dict(self.sampler)
        self.send(snap)
        assert self.ours() == disk and self.kernel.mutations == mutations
        assert self.sampler == view

    @rule(data=st.data())
    def hostile_uid(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(HOSTILE_UIDS))
        mutations = self.kernel.mutations
        assert self.core.handle(PodUp(uid, "ns", "n"), self.now) == []
        assert self.core.handle(ContainerUp("cx", uid, f"/cg/{uid}/cx"), self.now) == []
        assert self.kernel.mutations == mutations

    @rule()
    def restart_reconciler(self) -> None:
        self.core = self._new_core()
        self.told_pods, self.told_containers = set(), {}
        self.synced, self.sampler, self.orphans_after_passes = False, {}, []

    @rule()
    def retry_pass(self) -> None:
        self.now += RETRY
        faults = self.pending_faults()
        self.drive(lambda: self.core.on_retry_timer(self.now), set())
        clean = self.pending_faults() == faults  # no injected failure hit this pass
        # A group's uid: its name after the prefix (after "<class>/" for class groups).
        orphans = {
            n for n in self.ours() if n.rpartition("/")[2][len(PREFIX) :] not in self.cg.pods
        }
        if clean:
            seen = self.orphans_after_passes
            survivors = orphans & seen[0] & seen[1] if len(seen) == 2 else set()
            assert not survivors, f"orphans survived three passes: {survivors}"
            self._check_converged()
        for tids in (t for cs in self.cg.pods.values() for t in cs.values()):
            tids -= self.zombies
        self.zombies.clear()
        # Only a clean pass is known to have seen (and started the grace of) every orphan.
        if self.synced and clean:
            self.orphans_after_passes = [*self.orphans_after_passes[-1:], orphans]
        else:
            self.orphans_after_passes = []

    def _check_converged(self) -> None:
        """After a clean pass: groups and threads in place, counts as in the model."""
        states = {s.pod_uid: s for s in self.core.snapshot().states}
        live_told = {u for u in self.told_pods if u in self.cg.pods}
        if self.synced:
            assert set(states) == live_told
        else:  # dead pods are only forgotten after a snapshot (or PodDown)
            assert set(states) >= live_told
        waiting = [u for u in live_told if states[u].group_path is None]
        if waiting:
            assert self.kernel.free_rmids() <= 0, f"{waiting} wait while RMIDs are free"
        for uid in live_told:
            running = [
                cid
                for cid, u in self.told_containers.items()
                if u == uid and cid in self.cg.pods[uid]
            ]
            state = states[uid]
            assert state.total_containers == len(running)
            if state.group_path is None:
                assert state.reconciled_containers == 0
                continue
            assert state.reconciled_containers == len(running)
            for cid in running:
                for tid in self.cg.pods[uid][cid] - self.zombies:
                    assert self.kernel.group_of(tid) == PREFIX + uid, (uid, cid, tid)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def foreign_groups_untouched(self) -> None:
        for name, tids in self.foreign.items():
            assert self.kernel.groups.get(name) == tids

    @invariant()
    def reported_state_matches_the_core(self) -> None:
        assert self.sampler == {s.pod_uid: s for s in self.core.snapshot().states}

    @invariant()
    def reported_groups_exist(self) -> None:
        ours = self.ours()
        for state in self.core.snapshot().states:
            if state.group_path is not None:
                assert state.group_path.rsplit("/", 1)[1] in ours

    @invariant()
    def no_thread_in_another_pods_group(self) -> None:
        owner = {t: uid for uid, cs in self.cg.pods.items() for ts in cs.values() for t in ts}
        for name, tids in self.ours().items():
            for tid in tids:
                assert PREFIX + owner[tid] == name, (name, tid)


def run_machine(
    kernel_factory: Callable[[], FakeKernel],
    max_examples: int,
    steps: int = 40,
    machine: Callable[[], ReconcilerMachine] | None = None,
) -> None:
    """Run the machine against a kernel (a new one per example, closed at teardown);
    ``machine`` builds a variant of it instead."""
    run_state_machine_as_test(
        machine or (lambda: ReconcilerMachine(kernel_factory)),  # type: ignore[arg-type]
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_reconciler_against_the_memory_kernel() -> None:
    run_machine(memory_kernel, max_examples=int(os.environ.get("RP_MACHINE_EXAMPLES", "300")))
