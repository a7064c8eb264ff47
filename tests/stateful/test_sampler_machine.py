"""The sampler core with the production reader over a real directory tree, against a
model written from the output contract (docs/output.md), over random event sequences.

* Groups are real directories with two L3 domains (``mon_L3_00``/``_01``) and real
  counter files, read by :class:`PreadReader`, which keeps descriptors open: a group
  re-created under its old name after the sampler was told it went away is only read
  correctly when the sampler made the reader ``forget()`` the old one.
* A domain may say ``Unavailable`` or ``Error`` (LLC: the pod is skipped for the tick)
  and an MBM domain ``Unavailable``/``Unassigned`` (the MBM value is null and
  ``mbm_state`` says why; assigned < unavailable < unassigned).
* MBM counts never decrease within a group's life, so the reported values are the
  sums read (continuity across resets is tested in test_counter_resets).
* Each tick's rows are compared with the model as a multiset: a duplicated or missing
  row fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from resctrl_pipeline.messages import (
    GroupGone,
    GroupSnapshot,
    GroupState,
    MetadataSnapshot,
    PodLabels,
    PodLabelsGone,
)
from resctrl_pipeline.resctrl.mondata import PreadReader
from resctrl_pipeline.sampling import Sampler
from tests.support import fuzz_examples

UIDS = st.sampled_from(["a", "b"])
#: Each pod's group is one of two directories (a re-created group gets a new name in
#: production, or the old one back), or none (its creation failed).
SLOTS = st.sampled_from([0, 1]) | st.none()
COUNTS = st.integers(0, 3)
DOMAINS = (0, 1)
LLC = st.integers(0, 2**40) | st.sampled_from(["Unavailable", "Error"])
MBM_WORDS = st.sampled_from(["Unavailable", "Unassigned"])
_RANK = {"assigned": 0, "unavailable": 1, "unassigned": 2}


def group_dir(root: str, uid: str, slot: int) -> str:
    return os.path.join(root, "mon_groups", f"pod_{uid}_{slot}")


def write(path: str, value: int | str) -> None:
    with open(path, "w") as f:
        f.write(f"{value}\n")


class SamplerMachine(RuleBasedStateMachine):
    """Model: pods (uid → path, total, reconciled), labels, and every counter file's
    current content; MBM files also remember their last number (counts only grow)."""

    @initialize(mbm=st.booleans())
    def start(self, mbm: bool) -> None:
        # In memory where there is one: every example lays out six groups afresh.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.root = tempfile.mkdtemp(prefix="rp-sm-", dir=shm)
        self.mbm = mbm
        self.files: dict[tuple[str, int, str], int | str] = {}
        self.last_mbm: dict[tuple[str, int, str], int] = {}
        self.generation = 0
        self.reader = PreadReader(mbm=mbm)
        self.sampler = Sampler(self.reader, with_mbm=mbm)
        self.pods: dict[str, tuple[str | None, int, int]] = {}
        self.labels: dict[str, tuple[str, str]] = {}
        self.seen_groups = self.seen_meta = False

    def teardown(self) -> None:
        if hasattr(self, "reader"):
            self.reader.close()
            shutil.rmtree(self.root, ignore_errors=True)

    def _create(self, path: str) -> None:
        """Lay out a group (the kernel's side); groups appear on first use, and each
        new one starts from a different occupancy."""
        self.generation += 1
        llc = 4096 * self.generation
        for d in DOMAINS:
            base = os.path.join(path, "mon_data", f"mon_L3_{d:02d}")
            os.makedirs(base)
            for feature in ("llc_occupancy", "mbm_total_bytes", "mbm_local_bytes"):
                value = llc if feature == "llc_occupancy" else 1000 * (d + 1)
                write(os.path.join(base, feature), value)
                self.files[(path, d, feature)] = value
                if feature != "llc_occupancy":
                    self.last_mbm[(path, d, feature)] = value

    def _path(self, uid: str, slot: int | None) -> str | None:
        return None if slot is None else self._group(uid, slot)

    def _group(self, uid: str, slot: int) -> str:
        path = group_dir(self.root, uid, slot)
        if (path, 0, "llc_occupancy") not in self.files:
            self._create(path)
        return path

    def _remove_unused(self) -> None:
        """The reconciler removes a group no pod uses any more; a later pod's group of
        the same name is a new one (new files), as when the kernel re-creates it."""
        used = {p for p, _, _ in self.pods.values()}
        for path in {p for p, _, _ in self.files} - used:
            shutil.rmtree(path)
            for key in [k for k in self.files if k[0] == path]:
                del self.files[key]
                self.last_mbm.pop(key, None)

    # --- events ----------------------------------------------------------------------

    @rule(uid=UIDS, slot=SLOTS, total=COUNTS, rec=COUNTS)
    def group_state(self, uid: str, slot: int | None, total: int, rec: int) -> None:
        path = self._path(uid, slot)
        self.sampler.handle_resctrl_event(GroupState(uid, path, total, rec))
        self.pods[uid] = (path, total, rec)
        self.seen_groups = True
        self._remove_unused()

    @rule(uid=UIDS)
    def group_gone(self, uid: str) -> None:
        self.sampler.handle_resctrl_event(GroupGone(uid))
        self.pods.pop(uid, None)
        self.seen_groups = True
        self._remove_unused()

    @rule(keep=st.sets(UIDS), slot=SLOTS)
    def group_snapshot(self, keep: set[str], slot: int | None) -> None:
        states = tuple(GroupState(u, self._path(u, slot), 1, 1) for u in sorted(keep))
        self.sampler.handle_resctrl_event(GroupSnapshot(states))
        self.pods = {s.pod_uid: (s.group_path, 1, 1) for s in states}
        self.seen_groups = True
        self._remove_unused()

    @rule(uid=UIDS, ns=st.text(max_size=5), name=st.text(max_size=5))
    def labels_add(self, uid: str, ns: str, name: str) -> None:
        self.sampler.handle_metadata_event(PodLabels(uid, ns, name))
        self.labels[uid] = (ns, name)
        self.seen_meta = True

    @rule(uid=UIDS)
    def labels_gone(self, uid: str) -> None:
        self.sampler.handle_metadata_event(PodLabelsGone(uid))
        self.labels.pop(uid, None)
        self.seen_meta = True

    @rule(keep=st.sets(UIDS))
    def metadata_snapshot(self, keep: set[str]) -> None:
        pods = tuple(PodLabels(u, "ns-" + u, "pod-" + u) for u in sorted(keep))
        self.sampler.handle_metadata_event(MetadataSnapshot(pods))
        self.labels = {u: ("ns-" + u, "pod-" + u) for u in keep}
        self.seen_meta = True

    # --- the kernel's side -----------------------------------------------------------

    @rule(uid=UIDS, slot=st.sampled_from([0, 1]), domain=st.sampled_from(DOMAINS), value=LLC)
    def set_llc(self, uid: str, slot: int, domain: int, value: int | str) -> None:
        path = self._group(uid, slot)
        write(os.path.join(path, "mon_data", f"mon_L3_{domain:02d}", "llc_occupancy"), value)
        self.files[(path, domain, "llc_occupancy")] = value

    @rule(
        uid=UIDS,
        slot=st.sampled_from([0, 1]),
        domain=st.sampled_from(DOMAINS),
        feature=st.sampled_from(["mbm_total_bytes", "mbm_local_bytes"]),
        value=st.integers(0, 2**30) | MBM_WORDS,
    )
    def set_mbm(self, uid: str, slot: int, domain: int, feature: str, value: int | str) -> None:
        path = self._group(uid, slot)
        key = (path, domain, feature)
        if isinstance(value, int):
            value += self.last_mbm[key]  # counts only grow while the group lives
            self.last_mbm[key] = value
        write(os.path.join(path, "mon_data", f"mon_L3_{domain:02d}", feature), value)
        self.files[key] = value

    # --- ticks -----------------------------------------------------------------------

    def _mbm(self, path: str, feature: str) -> tuple[int | None, str]:
        values = [self.files[(path, d, feature)] for d in DOMAINS]
        words = [v.lower() for v in values if isinstance(v, str)]
        if words:
            return None, max(words, key=_RANK.__getitem__)
        return sum(int(v) for v in values), "assigned"

    def _expected_row(self, uid: str) -> tuple[Any, ...] | None:
        path, total, rec = self.pods[uid]
        if path is None:
            return None
        llc = [self.files[(path, d, "llc_occupancy")] for d in DOMAINS]
        if not all(isinstance(v, int) for v in llc):
            return None  # skipped for this tick
        ns, name = self.labels.get(uid, (None, None))
        row: tuple[Any, ...] = (uid, ns, name, path, total, rec, sum(int(v) for v in llc))
        if self.mbm:
            (t, ts), (lo, ls) = (
                self._mbm(path, "mbm_total_bytes"),
                self._mbm(path, "mbm_local_bytes"),
            )
            row += (t, lo, max(ts, ls, key=_RANK.__getitem__))
        return row

    @invariant()
    def tick(self) -> None:
        """A tick after every step (as in production, ticks do not wait for events):
        the reader holds descriptors of every group as soon as a pod uses it."""
        if not hasattr(self, "sampler"):
            return
        batch = self.sampler.handle_sample_timer()
        expected = Counter(r for u in self.pods if (r := self._expected_row(u)) is not None)
        if not expected:
            assert batch is None
            return
        assert batch is not None
        c = batch.columns
        names = ["pod_uid", "pod_namespace", "pod_name", "resctrl_group", "total_containers",
                 "reconciled_containers", "llc_occupancy_bytes"]  # fmt: skip
        if self.mbm:
            names += ["mbm_total_bytes", "mbm_local_bytes", "mbm_state"]
        else:
            assert "mbm_total_bytes" not in c
        rows = Counter(zip(*(c[n] for n in names), strict=True))
        assert rows == expected
        assert len(set(c["start_timestamp"])) == 1

    @invariant()
    def readiness_matches(self) -> None:
        if hasattr(self, "sampler"):
            assert self.sampler.ready() == (self.seen_groups and self.seen_meta)


# Shrinking a failure replays many examples, each with real files: more time than the
# quick tests' default.
TestSamplerMachine = pytest.mark.timeout(600)(SamplerMachine.TestCase)
TestSamplerMachine.settings = settings(
    max_examples=fuzz_examples(150), stateful_step_count=30, deadline=None
)
