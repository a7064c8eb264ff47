"""The resctrl read side: a group's ``mon_data`` counters, summed over L3 domains.

Layout read (kernel ``Documentation/filesystems/resctrl.rst``)::

    <group>/mon_data/mon_L3_<id>/{llc_occupancy,mbm_total_bytes,mbm_local_bytes}
    <group>/mon_data/mon_L3_<id>/mon_sub_L3_<node>/…     (sub-NUMA clustering only)

Domain ids need not be contiguous. With sub-NUMA clustering the ``mon_L3_<id>`` file
already holds the sum of its ``mon_sub_L3_*`` files, so the sub files are read only
when the L3-level file is absent — a value is never counted twice.

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
import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from resctrl_pipeline.errors import GONE_ERRNOS, ResctrlGroupGone, ResctrlReadError

__all__ = [
    "FEATURES",
    "GroupReading",
    "LlcReader",
    "PreadReader",
    "counter_files",
    "parse_counter",
    "read_group",
]

FEATURES = ("llc_occupancy", "mbm_total_bytes", "mbm_local_bytes")
_NON_NUMERIC = {b"Unavailable": "unavailable", b"Error": "error", b"Unassigned": "unassigned"}
_MAX_COUNTER = 2**63 - 1
_READ_SIZE = 64


class GroupReading(NamedTuple):
    """One group's counters summed over its L3 domains (bytes); MBM None if absent.

    A named tuple rather than a frozen dataclass: one is built per group per tick, and
    a tuple is several times cheaper to construct.
    """

    llc_occupancy: int
    mbm_total: int | None = None
    mbm_local: int | None = None


class LlcReader(Protocol):
    """Reads a group's counters. The sampler core depends only on this."""

    def read(self, group_path: str) -> GroupReading:
        """Counters of the group at ``group_path``.

        Raises:
            ResctrlReadError: a value is not a number, or a file cannot be read.
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


def _read_failed(err: OSError, path: str, reason: str = "io") -> ResctrlReadError:
    """The typed error for an OSError on ``path``: gone, or ``reason``."""
    if err.errno in GONE_ERRNOS:
        return ResctrlGroupGone(f"{path}: {err.strerror}")
    return ResctrlReadError(reason, f"{path}: {err.strerror}")


def counter_files(group_path: str, feature: str) -> list[str]:
    """Paths of ``feature`` in every L3 domain of the group, each L3 counted once.

    Raises:
        ResctrlGroupGone: the group no longer exists.
        ResctrlReadError: ``missing`` when the group has no ``mon_data`` or no domain.
    """
    mon_data = os.path.join(group_path, "mon_data")
    try:
        domains = sorted(d for d in os.listdir(mon_data) if d.startswith("mon_L3_"))
    except FileNotFoundError as err:
        # A group without mon_data (monitoring off) is "missing"; no group is "gone".
        if os.path.isdir(group_path):
            raise ResctrlReadError("missing", f"{mon_data}: {err.strerror}") from err
        raise ResctrlGroupGone(f"{mon_data}: {err.strerror}") from err
    except OSError as err:
        raise _read_failed(err, mon_data, "missing") from err
    files: list[str] = []
    for domain in domains:
        top = os.path.join(mon_data, domain, feature)
        if os.path.exists(top):
            files.append(top)
            continue
        # No L3-level file: sum the sub-NUMA nodes instead (never both).
        base = os.path.join(mon_data, domain)
        try:
            subs = sorted(s for s in os.listdir(base) if s.startswith("mon_sub_L3_"))
        except OSError as err:  # the group was removed while we looked (pod churn)
            raise _read_failed(err, base, "missing") from err
        files.extend(
            os.path.join(base, s, feature)
            for s in subs
            if os.path.exists(os.path.join(base, s, feature))
        )
    if not files:
        raise ResctrlReadError("missing", f"{mon_data}: no {feature} in any L3 domain")
    return files


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(_READ_SIZE)
    except OSError as err:
        raise _read_failed(err, path) from err


def read_group(group_path: str, mbm: bool = True) -> GroupReading:
    """Read a group with plain open/read/close (no caching). Used by ``check``/tests."""
    llc = sum(parse_counter(_read_file(p), p) for p in counter_files(group_path, "llc_occupancy"))
    if not mbm:
        return GroupReading(llc)
    extra: list[int | None] = []
    for feature in ("mbm_total_bytes", "mbm_local_bytes"):
        try:
            paths = counter_files(group_path, feature)
        except ResctrlReadError:
            extra.append(None)
            continue
        extra.append(sum(parse_counter(_read_file(p), p) for p in paths))
    return GroupReading(llc, extra[0], extra[1])


def _fast_sum(fds: list[int]) -> int:
    """Sum of the counters behind ``fds`` read with pread: the hot path, unclassified.

    Raises:
        ValueError: a value is not a number or is out of range (the caller then reads
            the careful way, which classifies the problem). OSError: a read failed.
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
        if value > _MAX_COUNTER:
            raise ValueError(value)
        total += value
    return total


def _checked_sum(values: Iterable[int], where: str) -> int:
    """The llc_occupancy sum over domains, which must itself be a valid counter.

    Raises:
        ResctrlReadError: ``garbage`` when the sum is out of range.
    """
    total = sum(values)
    if total > _MAX_COUNTER:
        raise ResctrlReadError("garbage", f"{where}: llc_occupancy out of range")
    return total


@dataclass(slots=True)
class _OpenGroup:
    llc: list[int]
    mbm_total: list[int]
    mbm_local: list[int]

    def fds(self) -> list[int]:
        return [*self.llc, *self.mbm_total, *self.mbm_local]


class PreadReader:
    """Production :class:`LlcReader`: descriptors kept open, values read with pread.

    Args:
        mbm: also read ``mbm_total_bytes``/``mbm_local_bytes`` where they exist.
        fd_budget: how many descriptors it may keep open; default: the soft
            ``RLIMIT_NOFILE`` minus a reserve of 128 for everything else. Groups that
            do not fit are read with open/read/close (slower, but correct).
    """

    def __init__(self, mbm: bool = True, fd_budget: int | None = None) -> None:
        self.mbm = mbm
        if fd_budget is None:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            fd_budget = max(0, soft - 128)
        self.fd_budget = fd_budget
        self._open: dict[str, _OpenGroup] = {}
        self._paths: dict[str, tuple[list[str], list[str], list[str]]] = {}
        self._fd_count = 0
        self.reopens = 0
        self.fallback_reads = 0

    @property
    def open_fds(self) -> int:
        """Descriptors currently held."""
        return self._fd_count

    def _resolve(self, group_path: str) -> tuple[list[str], list[str], list[str]]:
        paths = self._paths.get(group_path)
        if paths is None:
            llc = counter_files(group_path, "llc_occupancy")
            total: list[str] = []
            local: list[str] = []
            if self.mbm:
                for feature, out in (("mbm_total_bytes", total), ("mbm_local_bytes", local)):
                    with contextlib.suppress(ResctrlReadError):
                        out.extend(counter_files(group_path, feature))
            paths = (llc, total, local)
            self._paths[group_path] = paths
        return paths

    def _open_group(self, group_path: str) -> _OpenGroup | None:
        paths = self._resolve(group_path)
        needed = sum(len(p) for p in paths)
        if self._fd_count + needed > self.fd_budget:
            return None
        opened: list[list[int]] = []
        try:
            for group in paths:
                opened.append([])
                for p in group:
                    opened[-1].append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as err:
            for fds in opened:
                for fd in fds:
                    os.close(fd)
            self._paths.pop(group_path, None)
            raise _read_failed(err, group_path) from err
        og = _OpenGroup(*opened)
        self._open[group_path] = og
        self._fd_count += needed
        return og

    def read(self, group_path: str) -> GroupReading:
        """See :meth:`LlcReader.read`. Retries once with fresh descriptors on I/O errors."""
        og = self._open.get(group_path)
        if og is not None:
            # Hot path, kept flat on purpose (it runs for every group on every tick):
            # any surprise (a non-number, a negative, a dead descriptor) falls through
            # to the careful path below, which classifies it.
            try:
                llc = _fast_sum(og.llc)
                if llc <= _MAX_COUNTER:
                    return GroupReading(
                        llc,
                        _fast_sum(og.mbm_total) if og.mbm_total else None,
                        _fast_sum(og.mbm_local) if og.mbm_local else None,
                    )
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

    def _read_closed(self, group_path: str) -> GroupReading:
        """Read a group that has no descriptors with open/read/close, from its resolved
        paths (no directory walk per tick). A file that cannot be read drops the paths,
        so the next read resolves the group afresh (it may have been re-created)."""
        llc, total, local = self._resolve(group_path)
        try:
            return GroupReading(
                _checked_sum((parse_counter(_read_file(p), p) for p in llc), group_path),
                sum(parse_counter(_read_file(p), p) for p in total) if total else None,
                sum(parse_counter(_read_file(p), p) for p in local) if local else None,
            )
        except ResctrlReadError as err:
            if err.reason in ("io", "gone"):
                self._paths.pop(group_path, None)
            raise

    @staticmethod
    def _careful(og: _OpenGroup, where: str) -> GroupReading:
        """Read and classify every counter of an open group (raises typed errors)."""
        pread = os.pread
        llc = _checked_sum((parse_counter(pread(fd, _READ_SIZE, 0), where) for fd in og.llc), where)
        total = sum(parse_counter(pread(fd, _READ_SIZE, 0), where) for fd in og.mbm_total)
        local = sum(parse_counter(pread(fd, _READ_SIZE, 0), where) for fd in og.mbm_local)
        return GroupReading(llc, total if og.mbm_total else None, local if og.mbm_local else None)

    def forget(self, group_path: str) -> None:
        """See :meth:`LlcReader.forget`: closes the group's descriptors."""
        self._paths.pop(group_path, None)
        og = self._open.pop(group_path, None)
        if og is None:
            return
        for fd in og.fds():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fd_count -= len(og.fds())

    def close(self) -> None:
        """Close every descriptor."""
        for group_path in list(self._open):
            self.forget(group_path)
