"""The sampler core: which pods to read, reading them on a tick, one batch per tick.

State: pods (uid → :class:`GroupState` from the reconciler), labels (uid → namespace,
name from the listener) and two readiness flags. Handlers mirror the reference test
plan: :meth:`Sampler.handle_resctrl_event`, :meth:`Sampler.handle_metadata_event`,
:meth:`Sampler.handle_sample_timer`, :meth:`Sampler.handle_health_timer`,
:meth:`Sampler.ready`, :meth:`Sampler.create_schema`.

The reader is injected (:class:`~resctrl_pipeline.resctrl.mondata.LlcReader`), and so
are the wall clock (for row timestamps) and the resctrl probe, so tests drive the core
with fakes; the monotonic time arrives as an argument.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from resctrl_pipeline import schema
from resctrl_pipeline.core import Core, Outputs, Stats, Timer
from resctrl_pipeline.counter_resets import CounterResets
from resctrl_pipeline.errors import ResctrlReadError
from resctrl_pipeline.messages import (
    POD_SUMMARY_COLUMNS,
    GroupGone,
    GroupSnapshot,
    GroupState,
    Message,
    MetadataSnapshot,
    OccupancyBatch,
    PodLabels,
    PodLabelsGone,
    PodSummary,
)
from resctrl_pipeline.resctrl.info import MonitoringInfo
from resctrl_pipeline.resctrl.mondata import GroupReading, LlcReader, sum_readings

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Sampler"]

# (uid, path, namespace, name, total, reconciled, mbm epoch, class paths, reset key):
# one per pod with a group; the reset key is "" when the row sums several groups
# (their counter resets are then followed per group, before the sum).
_PlanEntry = tuple[str, str, str | None, str | None, int, int, int, tuple[str, ...], str]
#: Pods read together by :meth:`PreadReader.read_many`, and their group paths.
_Chunk = tuple[list[_PlanEntry], list[str]]
#: Pods per :data:`_Chunk`: large enough that the per-call cost vanishes, small enough
#: that a chunk's one timestamp is within a fraction of a millisecond of each read.
CHUNK_PODS = 32


def _chunks(plan: list[_PlanEntry]) -> list[_Chunk]:
    """The plan's pods that are in no class, in order, cut into chunks."""
    plain = [e for e in plan if not e[7]]
    return [
        (plain[i : i + CHUNK_PODS], [e[1] for e in plain[i : i + CHUNK_PODS]])
        for i in range(0, len(plain), CHUNK_PODS)
    ]

log = logging.getLogger(__name__)


class Sampler(Core):
    """Sampler core. See the module docstring.

    Args:
        reader: reads a group's counters (production: ``PreadReader``).
        sampling_interval: seconds between ticks.
        health_interval: seconds between health log lines.
        probe: returns the current :class:`MonitoringInfo` of the resctrl root; called
            at start and every ``probe_interval`` (readiness follows it).
        with_mbm: emit the memory-bandwidth columns and ``mbm_state`` (None: decide
            from the probe).
        wall_ns: wall clock in ns since the epoch, for the row timestamps.
        pod_summary_interval: send a :class:`PodSummary` on the ``stats`` edge after a
            tick at most about this often (seconds), and on the first tick after a
            pod went away; None: never (``http.pod_metrics = false``).
        telemetry: AET events the reader reads (``GroupReading.telemetry`` order);
            each becomes a float64 column (:data:`schema.TELEMETRY_COLUMNS`); events
            without a known column are ignored.
        per_domain: emit the ``domains`` column (``output.per_domain``).
        label_keys: pod label keys whose values become columns
            (``output.pod_labels``; :func:`schema.label_column` names them).
    """

    name = "sampler"

    def __init__(
        self,
        reader: LlcReader,
        sampling_interval: float = 1.0,
        health_interval: float = 60.0,
        probe: Callable[[], MonitoringInfo] | None = None,
        probe_interval: float = 10.0,
        with_mbm: bool | None = None,
        wall_ns: Callable[[], int] = time.time_ns,
        pod_summary_interval: float | None = None,
        telemetry: Sequence[str] = (),
        per_domain: bool = False,
        label_keys: Sequence[str] = (),
    ) -> None:
        self.reader = reader
        self.sampling_interval = sampling_interval
        self.health_interval = health_interval
        self.probe_interval = probe_interval
        self._probe = probe
        self._wall_ns = wall_ns
        self.pods: dict[str, GroupState] = {}
        self.labels: dict[str, tuple[str, str]] = {}
        self._label_keys = tuple(label_keys)
        #: Per pod uid, the value of each of ``label_keys`` (None: the pod lacks it).
        self.label_values: dict[str, tuple[str | None, ...]] = {}
        self._plan: list[_PlanEntry] | None = None
        self._chunks: list[_Chunk] = []
        self._seen_groups = False
        self._seen_metadata = False
        self._monitoring: MonitoringInfo | None = None
        self.with_mbm = with_mbm
        self.samples = 0
        self.ticks = 0
        self.batches = 0
        self.read_errors: dict[str, int] = {}
        self.last_sample_wall_ns = 0
        self.pod_summary_interval = pod_summary_interval
        self._summary_due = 0.0  # monotonic; 0: on the next tick
        self._summary_was_empty = False  # whether the last summary sent had no pod
        if probe is not None:
            self._refresh_probe()
        if self.with_mbm is None:
            self.with_mbm = bool(self._monitoring and self._monitoring.has_mbm)
        # (index in GroupReading.telemetry, column name) of each emitted AET event.
        self._telemetry = [
            (i, schema.TELEMETRY_COLUMNS[event])
            for i, event in enumerate(telemetry)
            if event in schema.TELEMETRY_COLUMNS
        ]
        self.per_domain = per_domain
        self._resets = CounterResets()
        optional = [name for name, _, _ in schema.MBM_COLUMNS] if self.with_mbm else []
        optional += [name for _, name in self._telemetry]
        if per_domain:
            optional.append(schema.DOMAINS_COLUMN)
        optional += [schema.label_column(k) for k in self._label_keys]
        self._optional = schema.optional_names(optional)

    # --- readiness ----------------------------------------------------------------------

    def ready(self) -> bool:
        """True once at least one group event and one metadata event arrived."""
        return self._seen_groups and self._seen_metadata

    def _refresh_probe(self) -> None:
        if self._probe is None:
            return
        info = self._probe()
        if self._monitoring is not None and info.reason != self._monitoring.reason:
            if info.usable:
                log.info("resctrl monitoring is usable again at %s", info.root)
            else:
                log.error("resctrl monitoring unusable: %s", info.reason)
        elif self._monitoring is None and not info.usable:
            log.error("resctrl monitoring unusable: %s", info.reason)
        self._monitoring = info

    def create_schema(self) -> pa.Schema:
        """Arrow schema of the batches this sampler emits."""
        return schema.arrow_schema(self._optional)

    # --- handlers -------------------------------------------------------------------------

    def _set_pod(self, state: GroupState) -> None:
        old = self.pods.get(state.pod_uid)
        if old is not None:
            kept = {state.group_path, *state.class_paths}
            for path in (old.group_path, *old.class_paths):
                if path and path not in kept:
                    self._forget(path)
        self.pods[state.pod_uid] = state

    def _forget(self, path: str) -> None:
        self.reader.forget(path)
        self._resets.forget(path)

    def handle_resctrl_event(self, msg: GroupState | GroupGone | GroupSnapshot) -> None:
        """Apply a group delta or snapshot from the reconciler."""
        self._seen_groups = True
        self._plan = None
        if isinstance(msg, GroupState):
            self._set_pod(msg)
        elif isinstance(msg, GroupGone):
            self._summary_due = 0.0  # its series go at the next scrape, not a second later
            old = self.pods.pop(msg.pod_uid, None)
            if old is not None:
                for path in (old.group_path, *old.class_paths):
                    if path:
                        self._forget(path)
        else:
            keep = {s.pod_uid for s in msg.states}
            for uid in [u for u in self.pods if u not in keep]:
                self._summary_due = 0.0
                old = self.pods.pop(uid)
                for path in (old.group_path, *old.class_paths):
                    if path:
                        self._forget(path)
            for state in msg.states:
                self._set_pod(state)

    def handle_metadata_event(self, msg: PodLabels | PodLabelsGone | MetadataSnapshot) -> None:
        """Apply a label delta or snapshot from the listener."""
        self._seen_metadata = True
        self._plan = None
        if isinstance(msg, PodLabels):
            self.labels[msg.uid] = (msg.namespace, msg.name)
            if self._label_keys:
                self.label_values[msg.uid] = self._values_of(msg)
        elif isinstance(msg, PodLabelsGone):
            self.labels.pop(msg.uid, None)
            self.label_values.pop(msg.uid, None)
        else:
            self.labels = {p.uid: (p.namespace, p.name) for p in msg.pods}
            if self._label_keys:
                self.label_values = {p.uid: self._values_of(p) for p in msg.pods}

    def _values_of(self, msg: PodLabels) -> tuple[str | None, ...]:
        return tuple(msg.labels.get(k) for k in self._label_keys)

    def _ensure_plan(self) -> tuple[list[_PlanEntry], list[_Chunk]]:
        """The plan and its chunks, rebuilt only after an event: a tick does no
        per-pod dictionary work."""
        if self._plan is None:
            self._plan = self._build_plan()
            self._chunks = _chunks(self._plan)
        return self._plan, self._chunks

    def _build_plan(self) -> list[_PlanEntry]:
        """One :data:`_PlanEntry` per pod with a group."""
        plan = []
        for uid, state in self.pods.items():
            if state.group_path is None:
                continue
            ns, name = self.labels.get(uid, (None, None))
            plan.append(
                (uid, state.group_path, ns, name, state.total_containers,
                 state.reconciled_containers, state.mbm_epoch, state.class_paths,
                 "" if state.class_paths else state.group_path)
            )  # fmt: skip
        return plan

    def handle_sample_timer(self, reader: LlcReader | None = None) -> OccupancyBatch | None:
        """Read every pod that has a group; one batch, or None when no row was read.

        A pod whose read fails is skipped for this tick; the failure is counted by
        reason and logged at debug level.
        """
        source = reader or self.reader
        read = source.read
        read_many: Callable[[Sequence[str]], list[GroupReading | ResctrlReadError]] | None
        read_many = getattr(source, "read_many", None)
        self.ticks += 1
        plan, chunks = self._ensure_plan()
        start = self._wall_ns()
        wall_ns = self._wall_ns
        kept: list[_PlanEntry] = []
        stamps: list[int] = []
        readings: list[GroupReading] = []
        if read_many is not None:
            for chunk, paths in chunks:
                # Pods in no class, read together: one stamp per chunk, taken when its
                # last read completed (a chunk takes well under a millisecond).
                results = read_many(paths)
                stamp = wall_ns()
                for entry, result in zip(chunk, results, strict=True):
                    if isinstance(result, ResctrlReadError):
                        self._read_failed(entry, result)
                    else:
                        stamps.append(stamp)
                        readings.append(result)
                        kept.append(entry)

        for entry in plan:
            if read_many is not None and not entry[7]:
                continue  # read in a chunk above
            try:
                reading = read(entry[1]) if not entry[7] else self._read_spanning(read, entry)
            except ResctrlReadError as err:
                self._read_failed(entry, err)
                continue
            stamps.append(wall_ns())
            readings.append(reading)
            kept.append(entry)
        rows = len(kept)
        if not rows:
            return None
        # Transpose in C (zip) rather than appending to nine lists per row.
        uids, paths, nss, names, totals, recs, epochs, _, reset_keys = (
            list(c) for c in zip(*kept, strict=True)
        )
        llc, mbm_total, mbm_local, mbm_state, telemetry, domains = (
            list(c) for c in zip(*readings, strict=True)
        )
        cols: dict[str, list[Any]] = {
            "start_timestamp": [start] * rows,
            "timestamp": stamps,
            "pod_namespace": nss,
            "pod_name": names,
            "pod_uid": uids,
            "resctrl_group": paths,
            "total_containers": totals,
            "reconciled_containers": recs,
            "llc_occupancy_bytes": llc,
        }
        if self.with_mbm:
            self._resets.apply(reset_keys, epochs, mbm_total, mbm_local)
            cols["mbm_total_bytes"] = mbm_total
            cols["mbm_local_bytes"] = mbm_local
            cols["mbm_state"] = mbm_state
        if self._telemetry:
            for index, name in self._telemetry:
                cols[name] = [t[index] if len(t) > index else None for t in telemetry]
        if self.per_domain:
            cols[schema.DOMAINS_COLUMN] = domains
        if self._label_keys:
            missing = (None,) * len(self._label_keys)
            values = [self.label_values.get(uid, missing) for uid in uids]
            for i, key in enumerate(self._label_keys):
                cols[schema.label_column(key)] = [v[i] for v in values]
        self.samples += rows
        self.batches += 1
        self.last_sample_wall_ns = start
        return OccupancyBatch(cols)

    def pod_summary(self, batch: OccupancyBatch | None, now: float) -> PodSummary | None:
        """The tick's :class:`PodSummary` when one is due (see ``pod_summary_interval``).

        It shares the batch's column lists (no copy: both are encoded at once); a tick
        with no row gives one empty summary, so the last pod's series go too (and no
        more until a pod is read again).
        """
        if self.pod_summary_interval is None or now < self._summary_due:
            return None
        if batch is None and self._summary_was_empty:
            # The supervisor already knows there is no pod: repeating it every second
            # would wake it for nothing on an idle node.
            return None
        # Half a tick early, so that a 1 s interval at 1 s sampling is every tick.
        self._summary_due = now + self.pod_summary_interval - self.sampling_interval / 2
        self._summary_was_empty = batch is None
        if batch is None:
            return PodSummary(self._wall_ns())
        cols = batch.columns
        return PodSummary(
            cols["start_timestamp"][0], {k: cols[k] for k in POD_SUMMARY_COLUMNS if k in cols}
        )

    def _read_failed(self, entry: _PlanEntry, err: ResctrlReadError) -> None:
        self.read_errors[err.reason] = self.read_errors.get(err.reason, 0) + 1
        log.debug("skipping pod %s this tick: %s", entry[0], err)

    def _read_spanning(
        self, read: Callable[[str], GroupReading], entry: _PlanEntry
    ) -> GroupReading:
        """The row of a pod with groups in several classes: their sum.

        MBM resets are followed per group before summing (a group that restarts must
        not look like the whole pod restarting). Any group failing skips the row.
        """
        paths = [entry[1], *entry[7]]
        parts = [read(p) for p in paths]
        totals = [r.mbm_total for r in parts]
        locals_ = [r.mbm_local for r in parts]
        if self.with_mbm:
            self._resets.apply(paths, [entry[6]] * len(paths), totals, locals_)
        return sum_readings(parts, totals, locals_)

    def handle_health_timer(self) -> str | None:
        """Log ``resctrl health: pods_failed=N, pods_unreconciled=M`` when non-zero."""
        failed = sum(1 for s in self.pods.values() if s.group_path is None)
        unreconciled = sum(
            1 for s in self.pods.values() if s.reconciled_containers < s.total_containers
        )
        if not failed and not unreconciled:
            return None
        line = f"resctrl health: pods_failed={failed}, pods_unreconciled={unreconciled}"
        log.info(line)
        return line

    # --- Core hooks -------------------------------------------------------------------------

    def timers(self) -> list[Timer]:
        """Sampling, health and resctrl probe timers."""
        timers = [Timer("sample", self.sampling_interval), Timer("health", self.health_interval)]
        if self._probe is not None:
            timers.append(Timer("probe", self.probe_interval))
        return timers

    def idle_timers(self) -> frozenset[str]:
        """``sample`` while no pod has a group and the supervisor has heard so: an idle
        node's sampler then sleeps instead of ticking over nothing."""
        plan, _ = self._ensure_plan()  # needed at the next tick anyway
        if plan:
            return frozenset()
        if self.pod_summary_interval is not None and not self._summary_was_empty:
            return frozenset()  # one empty summary still has to go
        return frozenset({"sample"})

    def on_message(self, edge: str, msg: Message, now: float) -> Outputs:
        """Route group and metadata messages to their handlers; ignore anything else."""
        if isinstance(msg, GroupState | GroupGone | GroupSnapshot):
            self.handle_resctrl_event(msg)
        elif isinstance(msg, PodLabels | PodLabelsGone | MetadataSnapshot):
            self.handle_metadata_event(msg)
        return []

    def on_timer(self, name: str, now: float) -> Outputs:
        """Dispatch the timers of :meth:`timers`."""
        if name == "sample":
            batch = self.handle_sample_timer()
            out: Outputs = [("occupancy", batch)] if batch is not None else []
            summary = self.pod_summary(batch, now)
            if summary is not None:
                out.append(("stats", summary))
            return out
        if name == "health":
            self.handle_health_timer()
        elif name == "probe":
            self._refresh_probe()
        return []

    def statistics(self) -> Stats:
        """Samples, read errors by reason, pods, readiness of sampler and resctrl."""
        counters: dict[str, float] = {
            "samples": self.samples, "ticks": self.ticks, "batches": self.batches,
        }  # fmt: skip
        for reason, n in self.read_errors.items():
            counters[f"read_errors_{reason}"] = n
        mon = self._monitoring
        gauges: dict[str, float] = {
            "pods": len(self.pods),
            "pods_failed": sum(1 for s in self.pods.values() if s.group_path is None),
            "last_sample_seconds": self.last_sample_wall_ns / 1e9,
        }
        if mon is not None and mon.num_rmids is not None:
            gauges["rmid_capacity"] = mon.num_rmids
        ready = {"sampler": self.ready(), "resctrl": bool(mon is None or mon.usable)}
        info = {}
        if not self._seen_groups or not self._seen_metadata:
            missing = [n for n, ok in (("group", self._seen_groups),
                                       ("metadata", self._seen_metadata)) if not ok]  # fmt: skip
            info["sampler"] = f"waiting for the first {' and '.join(missing)} event"
        if mon is not None and not mon.usable:
            info["resctrl"] = mon.reason
        return Stats(counters, gauges, ready, info)
