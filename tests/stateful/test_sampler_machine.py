"""The sampler core against a trivial model over random event sequences."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from resctrl_pipeline.errors import ResctrlReadError
from resctrl_pipeline.messages import (
    GroupGone,
    GroupSnapshot,
    GroupState,
    MetadataSnapshot,
    PodLabels,
    PodLabelsGone,
)
from resctrl_pipeline.sampling import Sampler
from tests.test_sampling import FakeLlcReader

UIDS = st.sampled_from(["a", "b", "c", "d"])
PATHS = st.sampled_from(["/g/1", "/g/2", "/g/3"]) | st.none()
COUNTS = st.integers(0, 3)
VALUES = st.integers(0, 2**40) | st.sampled_from(["unavailable", "error", "garbage"])


class SamplerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.reader = FakeLlcReader()
        self.sampler = Sampler(self.reader, with_mbm=False)
        self.pods: dict[str, tuple[str | None, int, int]] = {}
        self.labels: dict[str, tuple[str, str]] = {}
        self.values: dict[str, int | str] = {}
        self.seen_groups = self.seen_meta = False

    @rule(uid=UIDS, path=PATHS, total=COUNTS, rec=COUNTS)
    def group_state(self, uid: str, path: str | None, total: int, rec: int) -> None:
        self.sampler.handle_resctrl_event(GroupState(uid, path, total, rec))
        self.pods[uid] = (path, total, rec)
        self.seen_groups = True

    @rule(uid=UIDS)
    def group_gone(self, uid: str) -> None:
        self.sampler.handle_resctrl_event(GroupGone(uid))
        self.pods.pop(uid, None)
        self.seen_groups = True

    @rule(keep=st.sets(UIDS), path=PATHS)
    def group_snapshot(self, keep: set[str], path: str | None) -> None:
        states = tuple(GroupState(u, path, 1, 1) for u in sorted(keep))
        self.sampler.handle_resctrl_event(GroupSnapshot(states))
        self.pods = {u: (path, 1, 1) for u in keep}
        self.seen_groups = True

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

    @rule(path=st.sampled_from(["/g/1", "/g/2", "/g/3"]), value=VALUES)
    def set_value(self, path: str, value: int | str) -> None:
        self.values[path] = value
        self.reader.values[path] = (
            value if isinstance(value, int) else ResctrlReadError(value, path)
        )

    @rule()
    def sample(self) -> None:
        batch = self.sampler.handle_sample_timer()
        expected = set()
        for uid, (path, total, rec) in self.pods.items():
            value = self.values.get(path) if path else None
            if path is None or not isinstance(value, int):
                continue
            ns, name = self.labels.get(uid, (None, None))
            expected.add((uid, ns, name, path, total, rec, value))
        if not expected:
            assert batch is None
            return
        assert batch is not None
        c = batch.columns
        rows = set(
            zip(
                c["pod_uid"], c["pod_namespace"], c["pod_name"], c["resctrl_group"],
                c["total_containers"], c["reconciled_containers"], c["llc_occupancy_bytes"],
                strict=True,
            )
        )  # fmt: skip
        assert rows == expected
        assert len(set(c["start_timestamp"])) == 1

    @invariant()
    def readiness_matches(self) -> None:
        assert self.sampler.ready() == (self.seen_groups and self.seen_meta)


TestSamplerMachine = SamplerMachine.TestCase
TestSamplerMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
