"""The resctrl read side: a group's ``mon_data`` counters, summed over their domains.

Layout read (kernel ``Documentation/filesystems/resctrl.rst``, reference
``resctrl-modern.md`` §1–3)::

    <group>/mon_data/mon_L3_<id>/{llc_occupancy,mbm_total_bytes,mbm_local_bytes}
    <group>/mon_data/mon_L3_<id>/mon_sub_L3_<node>/…     (sub-NUMA clustering only)
    <group>/mon_data/mon_PERF_PKG_<package>/{core_energy,activity,…}   (Intel AET)

Domain ids need not be contiguous. With sub-NUMA clustering (SNC) the ``mon_L3_<id>``
file already holds the sum of its ``mon_sub_L3_*`` files, so one level is read, never
both: the L3 level, or the sub-nodes where the L3-level file is absent. Kernels
6.11–6.15 without fix 594902c986e2 read 0 at the L3 level once an SNC node's first CPU
went offline; a zero L3-level occupancy is therefore checked against the sub-nodes,
and if they disagree the reader logs it once and reads the sub-nodes from then on.

MBM values: ``Unassigned`` (no counter in a domain, ABMC) and ``Unavailable`` make the
event's value None and set :attr:`GroupReading.mbm_state`; a partial sum over the
assigned domains is never reported. AET values are fixed-point decimals (``%llu.%06llu``)
or integers, summed as float64 over the packages that hold a value. Any other
``mon_data`` entry is ignored, with one log line per kind of name.

:class:`PreadReader` is the production reader: it resolves a group's counter files
once, keeps their descriptors open and reads them with ``os.pread`` at offset 0 (the
kernel regenerates the value on every read). It reopens on a read failure and when
told a group changed, and falls back to open/read/close for the groups that do not
fit under ``RLIMIT_NOFILE``.

A group removed while it is read (pod churn) is the typed outcome
:class:`~resctrl_pipeline.errors.ResctrlGroupGone` (reason ``gone``) whichever errno
of :data:`~resctrl_pipeline.errors.GONE_ERRNOS` the kernel chose, never an OSError.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import resource
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from resctrl_pipeline.errors import GONE_ERRNOS, ResctrlGroupGone, ResctrlReadError

__all__ = [
    "FEATURES",
    "GroupFiles",
    "GroupReading",
    "LlcReader",
    "PreadReader",
    "counter_files",
    "parse_counter",
    "parse_telemetry",
    "read_group",
    "resolve",
    "sum_readings",
]

log = logging.getLogger(__name__)

FEATURES = ("llc_occupancy", "mbm_total_bytes", "mbm_local_bytes")
_NON_NUMERIC = {b"Unavailable": "unavailable", b"Error": "error", b"Unassigned": "unassigned"}
_MAX_COUNTER = 2**63 - 1
_READ_SIZE = 64
_L3 = "mon_L3_"
_SUB = "mon_sub_L3_"
_PKG = "mon_PERF_PKG_"
# A missing MBM value's state, by the word the kernel printed (worst state wins).
_MBM_WORDS = {b"Unassigned": "unassigned", b"Unavailable": "unavailable"}
_STATE_RANK = {"assigned": 0, "unavailable": 1, "unassigned": 2}

_unknown_logged: set[str] = set()


class GroupReading(NamedTuple):
    """One group's counters, summed over its domains.

    ``mbm_total``/``mbm_local`` are bytes, None when absent or not countable now;
    ``mbm_state`` says why (``assigned``, ``unassigned``, ``unavailable``,
    ``unsupported``; None when MBM is not read at all). ``telemetry`` holds the AET
    events the reader was asked for, in its order (None: no valid value). ``domains``
    is the per-L3-domain breakdown when asked for.

    A named tuple rather than a frozen dataclass: one is built per group per tick, and
    a tuple is several times cheaper to construct.
    """

    llc_occupancy: int
    mbm_total: int | None = None
    mbm_local: int | None = None
    mbm_state: str | None = None
    telemetry: tuple[float | None, ...] = ()
    domains: list[dict[str, Any]] | None = None


class LlcReader(Protocol):
    """Reads a group's counters. The sampler core depends only on this (and uses a
    reader's ``read_many``, as :class:`PreadReader` has, where there is one)."""

    def read(self, group_path: str) -> GroupReading:
        """Counters of the group at ``group_path``.

        Raises:
            ResctrlReadError: the occupancy is not a number, an MBM value is an
                ``Error`` or garbage, or a file cannot be read.
        """
        ...

    def forget(self, group_path: str) -> None:
        """Drop anything cached for the group (it was removed or replaced)."""
        ...


def parse_counter(raw: bytes, where: str = "") -> int:
    """Parse one counter file's content (``b"123456\\n"``) into bytes.

    Raises:
        ResctrlReadError: ``Unavailable``/``Error``/``Unassigned`` (reason named after
            the word), or anything else that is not a non-negative 64-bit integer
            (reason ``garbage``).
    """
    text = raw.strip()
    try:
        value = int(text)
    except ValueError:
        reason = _NON_NUMERIC.get(text, "garbage")
        raise ResctrlReadError(reason, f"{where}: {text[:32]!r}") from None
    if value < 0 or value > _MAX_COUNTER or not text.isdigit():
        raise ResctrlReadError("garbage", f"{where}: {text[:32]!r}")
    return value


def parse_telemetry(raw: bytes) -> float | None:
    """Parse an AET value: ``123.456789`` (fixed point) or ``42`` (integer).

    Returns:
        The value, or None for ``Unavailable``, ``Error`` or anything not a
        non-negative decimal number (the column is null, the row stays).
    """
    text = raw.strip()
    whole, dot, frac = text.partition(b".")
    if not whole.isdigit() or (dot and not frac.isdigit()):
        return None
    return float(text)


def _read_failed(err: OSError, path: str, reason: str = "io") -> ResctrlReadError:
    """The typed error for an OSError on ``path``: gone, or ``reason``."""
    if err.errno in GONE_ERRNOS:
        return ResctrlGroupGone(f"{path}: {err.strerror}")
    return ResctrlReadError(reason, f"{path}: {err.strerror}")


def _note_unknown(where: str, name: str) -> None:
    """Log an unknown ``mon_data`` entry once per kind of name (its non-digit stem)."""
    stem = name.rstrip("0123456789")
    if stem not in _unknown_logged:
        _unknown_logged.add(stem)
        log.info("ignoring unknown resctrl monitoring directory %s/%s", where, name[:64])


def _domain_id(name: str, stem: str) -> int | None:
    digits = name[len(stem) :]
    return int(digits) if digits.isdigit() else None


@dataclass(slots=True)
class GroupFiles:
    """A group's counter files, resolved once.

    Per MBM/LLC feature: the files read and, in parallel, the L3 domain id of each.
    ``llc_subs``: sub-node occupancy files behind L3-level ones (SNC), for the zero
    check, with ``llc_subs_dom`` the L3 domain of each. ``telemetry``: per requested
    AET event, its file in every package.
    """

    llc: list[str] = field(default_factory=list)
    llc_dom: list[int] = field(default_factory=list)
    total: list[str] = field(default_factory=list)
    total_dom: list[int] = field(default_factory=list)
    local: list[str] = field(default_factory=list)
    local_dom: list[int] = field(default_factory=list)
    llc_subs: list[str] = field(default_factory=list)
    llc_subs_dom: list[int] = field(default_factory=list)
    telemetry: list[list[str]] = field(default_factory=list)


def resolve(
    group_path: str,
    *,
    mbm: bool = True,
    telemetry: Sequence[str] = (),
    sub_level: bool = False,
) -> GroupFiles:
    """Walk a group's ``mon_data`` once and list the files to read.

    Args:
        mbm: include the MBM files. telemetry: AET event names to include.
        sub_level: read SNC sub-nodes even where the L3-level file exists (the
            kernel's L3-level sum is known to be wrong on this node).

    Raises:
        ResctrlGroupGone: the group no longer exists.
        ResctrlReadError: ``missing`` when the group has no ``mon_data`` or no L3
            domain with ``llc_occupancy``.
    """
    mon_data = os.path.join(group_path, "mon_data")
    try:
        entries = sorted(os.listdir(mon_data))
    except FileNotFoundError as err:
        # A group without mon_data (monitoring off) is "missing"; no group is "gone".
        if os.path.isdir(group_path):
            raise ResctrlReadError("missing", f"{mon_data}: {err.strerror}") from err
        raise ResctrlGroupGone(f"{mon_data}: {err.strerror}") from err
    except OSError as err:
        raise _read_failed(err, mon_data, "missing") from err
    files = GroupFiles(telemetry=[[] for _ in telemetry])
    features = (
        ("llc_occupancy", files.llc, files.llc_dom),
        ("mbm_total_bytes", files.total, files.total_dom),
        ("mbm_local_bytes", files.local, files.local_dom),
    )[: 3 if mbm else 1]
    for entry in entries:
        if entry.startswith(_L3) and (dom := _domain_id(entry, _L3)) is not None:
            _resolve_l3(os.path.join(mon_data, entry), dom, features, files, sub_level)
        elif entry.startswith(_PKG) and _domain_id(entry, _PKG) is not None:
            base = os.path.join(mon_data, entry)
            for event, out in zip(telemetry, files.telemetry, strict=True):
                path = os.path.join(base, event)
                if os.path.exists(path):
                    out.append(path)
        else:
            _note_unknown(mon_data, entry)
    if not files.llc:
        raise ResctrlReadError("missing", f"{mon_data}: no llc_occupancy in any L3 domain")
    return files


def _resolve_l3(
    base: str,
    dom: int,
    features: Iterable[tuple[str, list[str], list[int]]],
    files: GroupFiles,
    sub_level: bool,
) -> None:
    try:
        subs = sorted(s for s in os.listdir(base) if s.startswith(_SUB))
    except OSError as err:  # the group was removed while we looked (pod churn)
        raise _read_failed(err, base, "missing") from err
    for feature, out, doms in features:
        top = os.path.join(base, feature)
        below = [p for s in subs if os.path.exists(p := os.path.join(base, s, feature))]
        if os.path.exists(top) and not (sub_level and below):
            out.append(top)
            doms.append(dom)
            if feature == "llc_occupancy":
                files.llc_subs.extend(below)
                files.llc_subs_dom.extend([dom] * len(below))
        else:
            # No L3-level file (or a wrong one): sum the sub-NUMA nodes (never both).
            out.extend(below)
            doms.extend([dom] * len(below))


def counter_files(group_path: str, feature: str) -> list[str]:
    """Paths of ``feature`` in every L3 domain of the group, each L3 counted once.

    Raises:
        ResctrlReadError: ``missing`` when the group has no ``mon_data`` or no domain.
    """
    files = resolve(group_path)
    by_feature = {
        "llc_occupancy": files.llc,
        "mbm_total_bytes": files.total,
        "mbm_local_bytes": files.local,
    }
    paths = by_feature.get(feature)
    if not paths:
        raise ResctrlReadError("missing", f"{group_path}/mon_data: no {feature} in any L3 domain")
    return paths


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(_READ_SIZE)
    except OSError as err:
        raise _read_failed(err, path) from err


def _mbm(raws: Sequence[bytes], where: str) -> tuple[int | None, str]:
    """An MBM event's sum over domains and its state; None unless every domain counts.

    Raises:
        ResctrlReadError: ``error``/``garbage``: a value that is neither a number nor
            one of the words of a missing counter.
    """
    total, state = 0, "assigned"
    for raw in raws:
        text = raw.strip()
        if text.isdigit():
            total += int(text)
            continue
        word = _MBM_WORDS.get(text)
        if word is None:
            parse_counter(raw, where)  # raises the typed error
        elif _STATE_RANK[word] > _STATE_RANK[state]:
            state = word
    if state != "assigned" or total > _MAX_COUNTER:
        return None, state if state != "assigned" else "unavailable"
    return total, state


def _combine(total: tuple[int | None, str], local: tuple[int | None, str]) -> str:
    return max(total[1], local[1], key=_STATE_RANK.__getitem__)


def _telemetry(raws: Sequence[bytes]) -> float | None:
    """Sum over the packages that hold a value; None when none does."""
    values = [v for raw in raws if (v := parse_telemetry(raw)) is not None]
    return sum(values) if values else None


def _domains(
    files: GroupFiles, llc: Sequence[bytes], total: Sequence[bytes], local: Sequence[bytes]
) -> list[dict[str, Any]]:
    """The per-L3-domain breakdown; an MBM value is None where it does not count."""
    rows: dict[int, dict[str, Any]] = {}
    for dom, raw in zip(files.llc_dom, llc, strict=True):
        row = rows.setdefault(dom, {"domain": dom, "llc_occupancy_bytes": 0,
                                    "mbm_total_bytes": None, "mbm_local_bytes": None})  # fmt: skip
        row["llc_occupancy_bytes"] += int(raw)
    for name, doms, raws in (
        ("mbm_total_bytes", files.total_dom, total),
        ("mbm_local_bytes", files.local_dom, local),
    ):
        per: dict[int, list[bytes]] = {}
        for dom, raw in zip(doms, raws, strict=True):
            per.setdefault(dom, []).append(raw)
        for dom, values in per.items():
            if dom in rows:
                rows[dom][name] = _mbm(values, name)[0]
    return [rows[d] for d in sorted(rows)]


@dataclass(slots=True)
class _Values:
    """Raw contents of a group's files, as read this tick."""

    llc: list[bytes]
    total: list[bytes]
    local: list[bytes]
    telemetry: list[list[bytes]]


def _reading(
    files: GroupFiles, v: _Values, where: str, mbm: bool, per_domain: bool
) -> GroupReading:
    """Classify raw values into a reading (the careful path)."""
    llc = 0
    for raw in v.llc:
        llc += parse_counter(raw, where)
    if llc > _MAX_COUNTER:
        raise ResctrlReadError("garbage", f"{where}: llc_occupancy out of range")
    tele = tuple(_telemetry(raws) for raws in v.telemetry)
    if not mbm:
        state = None
        total_v: int | None = None
        local_v: int | None = None
    elif not files.total and not files.local:
        state, total_v, local_v = "unsupported", None, None
    else:
        total = _mbm(v.total, where) if files.total else (None, "unavailable")
        local = _mbm(v.local, where) if files.local else (None, "unavailable")
        state, total_v, local_v = _combine(total, local), total[0], local[0]
    domains = _domains(files, v.llc, v.total, v.local) if per_domain else None
    return GroupReading(llc, total_v, local_v, state, tele, domains)


def sum_readings(
    parts: Sequence[GroupReading],
    totals: Sequence[int | None],
    locals_: Sequence[int | None],
) -> GroupReading:
    """One reading for a pod with a group in several classes: the sum of ``parts``.

    ``totals``/``locals_`` are the parts' MBM values (possibly carried across resets);
    a sum is None when any part's is (never a partial sum); the state is the worst;
    telemetry sums what is known; domains add up by domain id.
    """
    states = [r.mbm_state for r in parts if r.mbm_state is not None]
    known = [s for s in states if s in _STATE_RANK]
    state = max(known, key=_STATE_RANK.__getitem__) if known else (states[0] if states else None)
    tele: list[float | None] = []
    for values in zip(*(r.telemetry for r in parts), strict=False):
        present = [v for v in values if v is not None]
        tele.append(sum(present) if present else None)
    domains = None
    if all(r.domains is not None for r in parts):
        domains = _merge_domains([r.domains or [] for r in parts])
    return GroupReading(
        sum(r.llc_occupancy for r in parts),
        None if any(t is None for t in totals) else sum(t or 0 for t in totals),
        None if any(v is None for v in locals_) else sum(v or 0 for v in locals_),
        state,
        tuple(tele),
        domains,
    )


def _merge_domains(lists: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-domain breakdowns of several groups added up by domain id (None-aware)."""
    merged: dict[int, dict[str, Any]] = {}
    for rows in lists:
        for d in rows:
            row = merged.get(d["domain"])
            if row is None:
                merged[d["domain"]] = dict(d)
                continue
            row["llc_occupancy_bytes"] += d["llc_occupancy_bytes"]
            for key in ("mbm_total_bytes", "mbm_local_bytes"):
                row[key] = None if row[key] is None or d[key] is None else row[key] + d[key]
    return [merged[k] for k in sorted(merged)]


def read_group(
    group_path: str, mbm: bool = True, telemetry: Sequence[str] = (), per_domain: bool = False
) -> GroupReading:
    """Read a group with plain open/read/close (no caching). Used by ``check``/tests."""
    files = resolve(group_path, mbm=mbm, telemetry=telemetry)
    values = _Values(
        [_read_file(p) for p in files.llc],
        [_read_file(p) for p in files.total],
        [_read_file(p) for p in files.local],
        [[_read_file(p) for p in paths] for paths in files.telemetry],
    )
    return _reading(files, values, group_path, mbm, per_domain)


def _fast_sum(fds: list[int], least: int = 0) -> int:
    """Sum of the counters behind ``fds`` read with pread: the hot path, unclassified.

    ``least`` 1 is for SNC L3-level sums, where a zero in any domain may be the
    kernel's bug rather than an empty cache (the careful path then checks that
    domain's sub-nodes).

    Raises:
        ValueError: a value is not a number or is out of range (below ``least``);
            the caller then reads the careful way, which classifies the problem.
            OSError: a read failed.
    """
    pread = os.pread
    total = 0
    for fd in fds:
        raw = pread(fd, _READ_SIZE, 0)
        # Digits and the newline only: int() alone would also take "+5", "1_000" and
        # inner blanks, which parse_counter (the careful path) rightly calls garbage.
        if not raw[:-1].isdigit():
            raise ValueError(raw)
        value = int(raw)
        if not least <= value <= _MAX_COUNTER:
            raise ValueError(value)
        total += value
    return total


def _zero_domains(files: GroupFiles, llc_raws: Sequence[bytes]) -> set[int]:
    """The L3 domains whose occupancy read exactly 0 (careful paths only)."""
    return {dom for raw, dom in zip(llc_raws, files.llc_dom, strict=True) if raw.strip() == b"0"}


@dataclass(slots=True)
class _OpenGroup:
    files: GroupFiles
    llc: list[int]
    mbm_total: list[int]
    mbm_local: list[int]
    telemetry: list[list[int]]
    snc_top: bool  # reads L3-level sums that have sub-nodes behind them

    def fds(self) -> list[int]:
        tele = [fd for fds in self.telemetry for fd in fds]
        return [*self.llc, *self.mbm_total, *self.mbm_local, *tele]

    def values(self) -> _Values:
        pread = os.pread
        return _Values(
            [pread(fd, _READ_SIZE, 0) for fd in self.llc],
            [pread(fd, _READ_SIZE, 0) for fd in self.mbm_total],
            [pread(fd, _READ_SIZE, 0) for fd in self.mbm_local],
            [[pread(fd, _READ_SIZE, 0) for fd in fds] for fds in self.telemetry],
        )


class PreadReader:
    """Production :class:`LlcReader`: descriptors kept open, values read with pread.

    Args:
        mbm: also read ``mbm_total_bytes``/``mbm_local_bytes`` where they exist.
        fd_budget: how many descriptors it may keep open; default: the soft
            ``RLIMIT_NOFILE`` minus a reserve of 128 for everything else. Groups that
            do not fit are read with open/read/close (slower, but correct).
        telemetry: AET event names to read (``info/PERF_PKG_MON/mon_features``).
        per_domain: fill :attr:`GroupReading.domains`.
    """

    def __init__(
        self,
        mbm: bool = True,
        fd_budget: int | None = None,
        telemetry: Sequence[str] = (),
        per_domain: bool = False,
    ) -> None:
        self.mbm = mbm
        self.telemetry = tuple(telemetry)
        self.per_domain = per_domain
        if fd_budget is None:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            fd_budget = max(0, soft - 128)
        self.fd_budget = fd_budget
        self._open: dict[str, _OpenGroup] = {}
        self._paths: dict[str, GroupFiles] = {}
        self._fd_count = 0
        self._sub_level = False  # the kernel's SNC L3-level sums read 0: read sub-nodes
        self.reopens = 0
        self.fallback_reads = 0

    @property
    def open_fds(self) -> int:
        """Descriptors currently held."""
        return self._fd_count

    @property
    def reads_sub_nodes(self) -> bool:
        """True once SNC L3-level sums were found wrong and sub-nodes are read instead."""
        return self._sub_level

    def _resolve(self, group_path: str) -> GroupFiles:
        files = self._paths.get(group_path)
        if files is None:
            files = resolve(
                group_path, mbm=self.mbm, telemetry=self.telemetry, sub_level=self._sub_level
            )
            self._paths[group_path] = files
        return files

    def _open_group(self, group_path: str) -> _OpenGroup | None:
        files = self._resolve(group_path)
        lists = [files.llc, files.total, files.local, *files.telemetry]
        needed = sum(len(p) for p in lists)
        if self._fd_count + needed > self.fd_budget:
            return None
        opened: list[list[int]] = []
        try:
            for paths in lists:
                opened.append([])
                for p in paths:
                    opened[-1].append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as err:
            for fds in opened:
                for fd in fds:
                    os.close(fd)
            self._paths.pop(group_path, None)
            raise _read_failed(err, group_path) from err
        og = _OpenGroup(files, opened[0], opened[1], opened[2], opened[3:], bool(files.llc_subs))
        self._open[group_path] = og
        self._fd_count += needed
        return og

    def read(self, group_path: str) -> GroupReading:
        """See :meth:`LlcReader.read`. Retries once with fresh descriptors on I/O errors."""
        og = self._open.get(group_path)
        if og is not None:
            # Hot path, kept flat on purpose (it runs for every group on every tick):
            # any surprise (a non-number, a negative, a dead descriptor, a missing
            # counter, telemetry, a zero behind SNC sub-nodes, the per-domain
            # breakdown) falls through to the careful path below, which classifies it.
            if not og.telemetry and not self.per_domain:
                try:
                    llc = _fast_sum(og.llc, least=int(og.snc_top))
                    if llc <= _MAX_COUNTER:
                        if not self.mbm:
                            return GroupReading(llc)
                        if not og.mbm_total and not og.mbm_local:
                            return GroupReading(llc, None, None, "unsupported")
                        if og.mbm_total and og.mbm_local:
                            total, local = _fast_sum(og.mbm_total), _fast_sum(og.mbm_local)
                            # A sum past int64 (garbage near the top in two domains)
                            # cannot be stored: the careful path calls it unavailable.
                            if total <= _MAX_COUNTER and local <= _MAX_COUNTER:
                                return GroupReading(llc, total, local, "assigned")
                except (ValueError, OSError):
                    pass
            try:
                return self._careful(og, group_path)
            except OSError:
                # A stale descriptor (group re-created under the same name): reopen once.
                self.forget(group_path)
                self.reopens += 1
        og = self._open_group(group_path)
        if og is None:
            self.fallback_reads += 1
            return self._read_closed(group_path)
        try:
            return self._careful(og, group_path)
        except OSError as err:
            self.forget(group_path)
            raise _read_failed(err, group_path) from err

    def read_many(self, group_paths: Sequence[str]) -> list[GroupReading | ResctrlReadError]:
        """:meth:`read` of every group in order; a failed group's error in its place.

        The sampler's hot path: when every group has its descriptors open and nothing
        to classify (no telemetry, no per-domain breakdown, no SNC sub-nodes behind
        it, MBM either off or both events present, the same number of domains), all
        their counters are read with one list comprehension of ``pread`` and checked
        at once (digits and newlines only, within range). That costs about half the
        interpreter time of one :meth:`read` call per group (measured by
        ``scripts/bench.py sampler``). Any surprise sends the whole call through
        :meth:`read` group by group, which classifies it.
        """
        fds = self._batch_fds(group_paths)
        if fds is None:
            return self._one_by_one(group_paths)
        pread = os.pread
        try:
            raws = [pread(fd, _READ_SIZE, 0) for fd in fds]
            values = list(map(int, raws))
        except (OSError, ValueError):
            return self._one_by_one(group_paths)
        joined = b"".join(raws)
        # int() alone also takes "+5", "1_000" and blanks, which parse_counter calls
        # garbage: only digits, one newline per value, no value out of range.
        if (
            joined.count(b"\n") != len(raws)
            or not joined.replace(b"\n", b"").isdigit()
            or max(values) > _MAX_COUNTER
        ):
            return self._one_by_one(group_paths)
        width = len(fds) // len(group_paths)
        domains = width // 3 if self.mbm else width
        llc = values[0::width]
        total = values[domains::width] if self.mbm else []
        local = values[2 * domains :: width] if self.mbm else []
        for d in range(1, domains):
            llc = list(map(int.__add__, llc, values[d::width]))
            if self.mbm:
                total = list(map(int.__add__, total, values[domains + d :: width]))
                local = list(map(int.__add__, local, values[2 * domains + d :: width]))
        if max(llc) > _MAX_COUNTER or (
            self.mbm and max(max(total), max(local)) > _MAX_COUNTER
        ):
            return self._one_by_one(group_paths)  # a sum past int64: classified there
        if not self.mbm:
            return list(map(GroupReading, llc))
        return list(map(GroupReading, llc, total, local, itertools.repeat("assigned")))

    def _batch_fds(self, group_paths: Sequence[str]) -> list[int] | None:
        """Every counter descriptor of ``group_paths``, group after group (llc, then
        MBM total and local, by domain); None when a group needs :meth:`read`."""
        if not group_paths or self.telemetry or self.per_domain:
            return None
        opened = self._open
        fds: list[int] = []
        width = -1
        for path in group_paths:
            og = opened.get(path)
            if og is None or og.snc_top or og.telemetry:
                return None
            if width != len(og.llc):
                if width != -1 or not og.llc:
                    return None
                width = len(og.llc)
            fds += og.llc
            if self.mbm:
                if len(og.mbm_total) != width or len(og.mbm_local) != width:
                    return None
                fds += og.mbm_total
                fds += og.mbm_local
        return fds

    def _one_by_one(self, group_paths: Sequence[str]) -> list[GroupReading | ResctrlReadError]:
        out: list[GroupReading | ResctrlReadError] = []
        for path in group_paths:
            try:
                out.append(self.read(path))
            except ResctrlReadError as err:
                out.append(err)
        return out

    def _read_closed(self, group_path: str) -> GroupReading:
        """Read a group that has no descriptors with open/read/close, from its resolved
        paths (no directory walk per tick). A file that cannot be read drops the paths,
        so the next read resolves the group afresh (it may have been re-created)."""
        files = self._resolve(group_path)
        try:
            values = _Values(
                [_read_file(p) for p in files.llc],
                [_read_file(p) for p in files.total],
                [_read_file(p) for p in files.local],
                [[_read_file(p) for p in paths] for paths in files.telemetry],
            )
            reading = _reading(files, values, group_path, self.mbm, self.per_domain)
        except ResctrlReadError as err:
            if err.reason in ("io", "gone"):
                self._paths.pop(group_path, None)
            raise
        if files.llc_subs and self._snc_zero(files, _zero_domains(files, values.llc), group_path):
            return self.read(group_path)
        return reading

    def _careful(self, og: _OpenGroup, where: str) -> GroupReading:
        """Read and classify every counter of an open group (raises typed errors)."""
        values = og.values()
        reading = _reading(og.files, values, where, self.mbm, self.per_domain)
        if og.snc_top and self._snc_zero(og.files, _zero_domains(og.files, values.llc), where):
            return self.read(where)
        return reading

    def _snc_zero(self, files: GroupFiles, zero: set[int], where: str) -> bool:
        """SNC L3-level sums read 0 in the ``zero`` domains: do their sub-nodes
        disagree? Then switch to reading sub-nodes everywhere.

        A domain whose sub-nodes read 0 too is simply empty; it is checked again on
        each tick it reads 0 (its sub-nodes' files only).

        Returns:
            True when the reader switched to sub-node reading (the caller re-reads).
        """
        if self._sub_level or not zero:
            return False
        try:
            below = sum(
                parse_counter(_read_file(p), p)
                for p, dom in zip(files.llc_subs, files.llc_subs_dom, strict=True)
                if dom in zero
            )
        except ResctrlReadError:
            return False
        if not below:
            return False
        log.warning(
            "SNC: %s reads 0 at the L3 level of domain(s) %s but %d bytes in their sub-NUMA "
            "nodes; this kernel lacks fix 594902c986e2 (zero sums after a CPU went "
            "offline): reading the sub-NUMA nodes from now on",
            where,
            ",".join(map(str, sorted(zero))),
            below,
        )
        self._sub_level = True
        self.close()
        return True

    def forget(self, group_path: str) -> None:
        """See :meth:`LlcReader.forget`: closes the group's descriptors."""
        self._paths.pop(group_path, None)
        og = self._open.pop(group_path, None)
        if og is None:
            return
        fds = og.fds()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fd_count -= len(fds)

    def close(self) -> None:
        """Close every descriptor (the reader stays usable)."""
        for group_path in list(self._open):
            self.forget(group_path)
        self._paths.clear()
