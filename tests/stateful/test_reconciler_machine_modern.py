"""The reconciler machine on a 2026 node: RDT classes, runtime-made groups and MBM
counter assignment (issue 13), over the in-memory kernel.

Besides the base machine's rules: threads change class (a policy, an exec written to a
class), a runtime makes ``[<class>/]mon_groups/<container-id>`` and moves a
container's threads into it, a runtime restart prunes every empty MON group
(goresctrl ``SetConfig(force)``), and another tool takes MBM counters. Invariants:
never more counters assigned than the hardware has, none taken from a foreign group,
after a clean pass every pod in a class has its MON group under that class holding its
threads there, the reported groups are exactly the pod's groups (every class it spans
and its runtime-made groups, summed in its row), and a prune never loses a pod's group
for longer than one pass.
"""

from __future__ import annotations

import os

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from resctrl_pipeline.reconcile import Reconciler
from resctrl_pipeline.reconcile.mbm_counters import CounterPolicy
from resctrl_pipeline.resctrl.groups import ResctrlGroups
from tests.stateful.test_reconciler_machine import (
    PREFIX,
    RETRY,
    FakeKernel,
    MemoryKernel,
    ReconcilerMachine,
    run_machine,
)

CLASSES = ("gold", "silver")
COUNTERS = 8  # per domain: the root's 2, then 3 groups of 2
ROOT = "/sys/fs/resctrl"


class ModernKernel(MemoryKernel):
    """The memory kernel with two classes and ABMC counters."""

    def __init__(self) -> None:
        super().__init__(num_rmids=12)
        self.mbm_counters = COUNTERS
        self._assign_all("")
        for ctrl in CLASSES:
            self.add_class(ctrl)


def modern_kernel() -> FakeKernel:
    return ModernKernel()


def leaf(name: str) -> str:
    return name.rpartition("/")[2]


class ModernMachine(ReconcilerMachine):
    """:class:`ReconcilerMachine` with classes, runtime-made groups and counters."""

    kernel: ModernKernel

    def __init__(self) -> None:
        super().__init__(modern_kernel)
        self.policy = ("auto",)
        self.pruned = False  # a prune happened since the last pass
        self.foreign_counters = {
            n: {e: set(d) for e, d in self.kernel.assigned.get(n, {}).items()}
            for n in self.foreign
        }

    def _new_core(self) -> Reconciler:
        return Reconciler(
            ResctrlGroups(self.kernel), self.cg, prefix=PREFIX, retry_interval=RETRY,
            mbm_policy=CounterPolicy(getattr(self, "policy", ("auto",))),
        )  # fmt: skip

    def ours(self) -> dict[str, set[int]]:
        return {n: set(t) for n, t in self.kernel.groups.items() if leaf(n).startswith(PREFIX)}

    # -- the world -------------------------------------------------------------------------

    @precondition(lambda self: self._containers())
    @rule(data=st.data(), ctrl=st.sampled_from(("", *CLASSES)))
    def thread_changes_class(self, data: st.DataObject, ctrl: str) -> None:
        """Written to a class's tasks (a policy, a class change): out of any MON group."""
        cid, uid = data.draw(st.sampled_from(self._containers()))
        alive = sorted(t for t in self.cg.pods[uid][cid] if t in self.kernel.threads)
        if alive:
            tid = data.draw(st.sampled_from(alive))
            self.kernel.move_to_class(tid, ctrl)

    @precondition(
        lambda self: self._containers()
        and not self.kernel.faults.get("mkdir")
        and not self.kernel.faults.get("write_tid")
    )
    @rule(data=st.data())
    def runtime_makes_its_group(self, data: st.DataObject) -> None:
        """runc enableMonitoring: <CLOS>/mon_groups/<container-id> with the container's
        threads of that CLOS (made before or after the agent saw the container)."""
        cid, uid = data.draw(st.sampled_from(self._containers()))
        alive = sorted(t for t in self.cg.pods[uid][cid] if t in self.kernel.threads)
        if not alive or self.kernel.free_rmids() <= 0:
            return
        ctrl = self.kernel.class_of(alive[0])
        name = f"{ctrl}/{cid}" if ctrl else cid
        if name in self.kernel.groups:
            return
        self.kernel.mkdir(name)
        for tid in alive:
            if self.kernel.class_of(tid) == ctrl:
                self.kernel.write_tid(name, tid)

    @precondition(lambda self: not self.kernel.faults.get("rmdir"))
    @rule()
    def runtime_restart_prunes(self) -> None:
        """goresctrl SetConfig(force): every empty MON group goes, ours included."""
        for name in [n for n, tids in self.kernel.groups.items() if not tids]:
            if name not in self.foreign:
                self.kernel.rmdir(name)
        self.pruned = True

    @rule(dom=st.sampled_from((0, 1)))
    def another_tool_takes_a_counter(self, dom: int) -> None:
        if self.kernel.free_counters(dom) > 0:
            held = self.kernel.assigned.setdefault("foreign_a", {})
            held.setdefault("mbm_total_bytes", set()).add(dom)
            self.foreign_counters.setdefault("foreign_a", {}).setdefault(
                "mbm_total_bytes", set()
            ).add(dom)

    @rule(policy=st.sampled_from([("auto",), ("none",), ("ns",)]))
    def policy_changes_with_a_restart(self, policy: tuple[str, ...]) -> None:
        self.policy = policy
        self.restart_reconciler()

    @rule()
    def retry_pass(self) -> None:
        faults = self.pending_faults()
        super().retry_pass()
        if self.pending_faults() == faults:  # a clean pass: every group was looked at
            self.pruned = False

    # -- after a clean pass ------------------------------------------------------------------

    def _check_converged(self) -> None:
        states = {s.pod_uid: s for s in self.core.snapshot().states}
        live_told = {u for u in self.told_pods if u in self.cg.pods}
        if self.synced:
            assert set(states) == live_told
        for uid in live_told:
            state = states[uid]
            if state.group_path is None:
                continue
            for cid, u in self.told_containers.items():
                if u != uid or cid not in self.cg.pods[uid]:
                    continue
                for tid in self.cg.pods[uid][cid] - self.zombies:
                    if tid not in self.kernel.threads:
                        continue
                    ctrl = self.kernel.class_of(tid)
                    runtime = f"{ctrl}/{cid}" if ctrl else cid
                    where = self.kernel.group_of(tid)
                    if where == runtime:
                        continue  # attributed (resctrl.runtime_groups = auto)
                    mine = f"{ctrl}/{PREFIX}{uid}" if ctrl else PREFIX + uid
                    if where != mine and self.kernel.free_rmids() <= 0:
                        continue  # no RMID for a group in that class yet
                    assert where == mine, (uid, cid, tid, ctrl, where)
            # The row sums every class the pod spans: each group holding one of its
            # threads is reported (ours in any class, and runtime-made ones).
            reported = {state.group_path, *state.class_paths}
            for cid, u in self.told_containers.items():
                if u != uid or cid not in self.cg.pods[uid]:
                    continue
                for tid in self.cg.pods[uid][cid] & set(self.kernel.threads):
                    where = self.kernel.group_of(tid)
                    if where is None or where in self.foreign:
                        continue
                    ctrl, _, name = where.rpartition("/")
                    base = f"{ROOT}/{ctrl}" if ctrl else ROOT
                    path = f"{base}/mon_groups/{name}"
                    assert path in reported, (uid, tid, where, reported)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def counters_within_the_budget(self) -> None:
        for dom in self.kernel.domains:
            assert self.kernel.free_counters(dom) >= 0

    @invariant()
    def foreign_counters_never_taken(self) -> None:
        for name, events in self.foreign_counters.items():
            for event, doms in events.items():
                assert doms <= self.kernel.assigned.get(name, {}).get(event, set()), name

    @invariant()
    def classes_never_touched(self) -> None:
        assert self.kernel.classes == set(CLASSES)

    @invariant()
    def reported_groups_exist(self) -> None:
        if self.pruned:
            return  # pruned since the last pass: the next one makes them again
        names = set(self.kernel.groups)
        for state in self.core.snapshot().states:
            for path in (state.group_path, *state.class_paths):
                if path is None:
                    continue
                rel = path[len(ROOT) + 1 :].replace("/mon_groups/", "/")
                rel = rel.removeprefix("mon_groups/")
                note(f"reported {rel}")
                if leaf(rel).startswith(PREFIX):
                    assert rel in names, rel

    @invariant()
    def no_thread_in_another_pods_group(self) -> None:
        owner = {t: uid for uid, cs in self.cg.pods.items() for ts in cs.values() for t in ts}
        for name, tids in self.ours().items():
            for tid in tids:
                assert PREFIX + owner[tid] == leaf(name), (name, tid)


def test_reconciler_with_classes_runtime_groups_and_counters() -> None:
    run_machine(modern_kernel, max_examples=int(os.environ.get("RP_MACHINE_EXAMPLES", "200")),
                machine=ModernMachine)  # fmt: skip
