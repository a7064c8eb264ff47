"""resctrl read side: counter parsing, domain sums (incl. sub-NUMA), the pread reader."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resctrl_pipeline.errors import ResctrlGroupGone, ResctrlReadError
from resctrl_pipeline.resctrl.info import mount_type, probe
from resctrl_pipeline.resctrl.mondata import (
    GroupReading,
    PreadReader,
    counter_files,
    parse_counter,
    read_group,
)
from tests.support import fuzz_examples, make_group, make_resctrl_tree, set_counter


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"Unavailable\n", "unavailable"), (b"Error\n", "error"), (b"Unassigned\n", "unassigned"),
     (b"-5\n", "garbage"), (b"12abc\n", "garbage"), (b"", "garbage"),
     (b"99999999999999999999999\n", "garbage"), (b"+5\n", "garbage")],
)  # fmt: skip
def test_non_numeric_values_are_typed_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(ResctrlReadError) as exc:
        parse_counter(raw, "f")
    assert exc.value.reason == reason


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_numbers_parse(value: int) -> None:
    assert parse_counter(f"{value}\n".encode()) == value


def test_multi_domain_sum_with_non_contiguous_ids(tmp_path: str) -> None:
    g = make_group(str(tmp_path), domains=(0, 3), value=0)
    set_counter(g, 0, "llc_occupancy", "1000\n")
    set_counter(g, 3, "llc_occupancy", "234\n")
    set_counter(g, 0, "mbm_total_bytes", "10\n")
    set_counter(g, 3, "mbm_total_bytes", "20\n")
    r = read_group(g)
    assert r.llc_occupancy == 1234
    assert r.mbm_total == 30
    assert PreadReader().read(g) == r


def test_sub_numa_counted_once_per_l3(tmp_path: str) -> None:
    g = make_group(str(tmp_path), domains=(0, 1), snc=2, value=100)
    # Each mon_L3 file holds the sum of its two sub-nodes (200); never add the subs too.
    assert len(counter_files(g, "llc_occupancy")) == 2
    assert read_group(g).llc_occupancy == 400
    assert PreadReader().read(g).llc_occupancy == 400


def test_sub_numa_without_l3_level_file_sums_the_subs(tmp_path: str) -> None:
    g = make_group(str(tmp_path), domains=(0,), snc=2, value=7)
    os.unlink(os.path.join(g, "mon_data", "mon_L3_00", "llc_occupancy"))
    assert read_group(g).llc_occupancy == 14


def test_group_without_mbm_reports_none(tmp_path: str) -> None:
    g = make_group(str(tmp_path), features=("llc_occupancy",), value=5)
    r = PreadReader().read(g)
    assert (r.llc_occupancy, r.mbm_total, r.mbm_local) == (10, None, None)


def test_pread_reader_sees_new_values_without_reopening(tmp_path: str) -> None:
    g = make_group(str(tmp_path), domains=(0,), value=1)
    reader = PreadReader()
    assert reader.read(g).llc_occupancy == 1
    fds = reader.open_fds
    # Rewrite in place (same inode), as the kernel regenerates content per read.
    with open(os.path.join(g, "mon_data", "mon_L3_00", "llc_occupancy"), "r+") as f:
        f.write("9\n")
    assert reader.read(g).llc_occupancy == 9
    assert reader.open_fds == fds and reader.reopens == 0


def test_pread_reader_reopens_after_group_recreated(tmp_path: str) -> None:
    g = make_group(str(tmp_path / "g"), domains=(0,), value=1)
    reader = PreadReader()
    assert reader.read(g).llc_occupancy == 1
    reader.forget(g)
    shutil.rmtree(g)
    make_group(g, domains=(0,), value=2)
    assert reader.read(g).llc_occupancy == 2


def test_an_mbm_sum_past_int64_is_unavailable_not_a_number_the_writer_must_refuse(
    tmp_path: str,
) -> None:
    """Two domains near the top of the range sum past int64: stored as a number, the
    row (and with it the whole tick's batch) would not fit the Parquet column."""
    g = make_group(str(tmp_path), value=0)
    set_counter(g, 0, "mbm_total_bytes", f"{2**63 - 1}\n")
    set_counter(g, 1, "mbm_total_bytes", "12\n")
    reader = PreadReader()
    try:
        for _ in range(3):  # the first read opens the descriptors; later ones are fast
            r = reader.read(g)
            assert (r.mbm_total, r.mbm_state, r.mbm_local) == (None, "unavailable", 0)
            (many,) = reader.read_many([g])
            assert many == r
    finally:
        reader.close()


def test_pread_reader_error_value_is_typed(tmp_path: str) -> None:
    g = make_group(str(tmp_path), domains=(0,), value=1)
    reader = PreadReader()
    reader.read(g)
    set_counter(g, 0, "llc_occupancy", "Error\n")
    with pytest.raises(ResctrlReadError) as exc:
        reader.read(g)
    assert exc.value.reason == "error"


def test_missing_group_is_typed_error(tmp_path: str) -> None:
    with pytest.raises(ResctrlGroupGone) as exc:
        PreadReader().read(str(tmp_path / "nope"))
    assert exc.value.reason == "gone"
    os.mkdir(tmp_path / "no-monitoring")  # a group without mon_data: not gone
    with pytest.raises(ResctrlReadError) as exc2:
        PreadReader().read(str(tmp_path / "no-monitoring"))
    assert exc2.value.reason == "missing"


def test_fd_budget_falls_back_to_open_read_close(tmp_path: str) -> None:
    groups = [make_group(str(tmp_path / f"g{i}"), domains=(0, 1), value=i) for i in range(5)]
    reader = PreadReader(mbm=False, fd_budget=4)  # room for two groups of two domains
    totals = [reader.read(g).llc_occupancy for g in groups]
    assert totals == [0, 2, 4, 6, 8]
    assert reader.open_fds == 4
    assert reader.fallback_reads == 3
    reader.forget(groups[0])
    assert reader.open_fds == 2
    reader.close()
    assert reader.open_fds == 0


def test_probe_usable_tree(tmp_path: str) -> None:
    make_resctrl_tree(str(tmp_path), num_rmids=17)
    info = probe(str(tmp_path))
    assert info.usable and info.num_rmids == 17 and info.has_mbm


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [("no_root", "does not exist"), ("no_features", "mon_features is missing"),
     ("no_llc", "lacks llc_occupancy"), ("no_groups", "mon_groups is missing")],
)  # fmt: skip
def test_probe_explains_why_unusable(tmp_path: str, mutate: str, needle: str) -> None:
    root = str(tmp_path / "resctrl")
    make_resctrl_tree(root)
    if mutate == "no_root":
        shutil.rmtree(root)
    elif mutate == "no_features":
        os.unlink(os.path.join(root, "info", "L3_MON", "mon_features"))
    elif mutate == "no_llc":
        with open(os.path.join(root, "info", "L3_MON", "mon_features"), "w") as f:
            f.write("mbm_total_bytes\n")
    else:
        os.rmdir(os.path.join(root, "mon_groups"))
    info = probe(root)
    assert not info.usable and needle in info.reason


def test_mount_type_from_proc_mounts_format(tmp_path: str) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("resctrl /sys/fs/resctrl resctrl rw,relatime 0 0\n"
                      "x /my\\040dir fuse.rp rw 0 0\n")  # fmt: skip
    assert mount_type("/sys/fs/resctrl", str(mounts)) == "resctrl"
    assert mount_type("/my dir", str(mounts)) == "fuse.rp"
    assert mount_type("/elsewhere", str(mounts)) is None


#: Counter file contents: what the kernel writes, and garbage it never should.
_CONTENTS = st.one_of(
    st.integers(min_value=0, max_value=2**62).map(lambda v: f"{v}\n"),
    st.sampled_from(["0\n", f"{2**63 - 1}\n", f"{2**63}\n", "Unavailable\n", "Error\n",
                     "Unassigned\n", "+5\n", "1_000\n", " 7\n", "7 \n", "-3\n", "", "\n",
                     "12\n34\n", "12", "٣\n"]),
)  # fmt: skip


def _valid(text: str) -> int | None:
    """The counter's value when ``text`` is one the kernel writes, else None."""
    if len(text) < 2 or text[-1] != "\n" or not text[:-1].isascii() or not text[:-1].isdigit():
        return None
    value = int(text)
    return value if value <= 2**63 - 1 else None


@settings(max_examples=fuzz_examples(60), deadline=None)
@given(
    mbm=st.booleans(),
    groups=st.lists(
        st.lists(st.tuples(_CONTENTS, _CONTENTS, _CONTENTS), min_size=2, max_size=2),
        min_size=1,
        max_size=6,
    ),
)
def test_read_many_reads_what_read_reads(mbm: bool, groups: list[list[tuple[str, ...]]]) -> None:
    """The batched hot path gives every group exactly what reading it alone gives: the
    sums where every file holds a number, the same typed error where one does not."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [make_group(os.path.join(tmp, f"g{i}"), value=1) for i in range(len(groups))]
        reader = PreadReader(mbm=mbm)
        try:
            _compare(reader, paths, mbm, groups)
        finally:
            reader.close()


def _compare(
    reader: PreadReader, paths: list[str], mbm: bool, groups: list[list[tuple[str, ...]]]
) -> None:
    features = ("llc_occupancy", "mbm_total_bytes", "mbm_local_bytes")
    first = GroupReading(2, 2, 2, "assigned") if mbm else GroupReading(2)
    assert reader.read_many(paths) == [first] * len(paths)  # opens the descriptors
    for path, domains in zip(paths, groups, strict=True):
        for dom, texts in enumerate(domains):
            for feat, text in zip(features, texts, strict=True):
                set_counter(path, dom, feat, text)
    got = reader.read_many(paths)  # descriptors open: the batched path first
    for path, domains, result in zip(paths, groups, got, strict=True):
        values = [[_valid(t) for t in texts] for texts in domains]
        llc = [v[0] for v in values]
        if all(v is not None for v in llc) and (
            not mbm or all(x is not None for v in values for x in v)
        ):
            sums = [sum(v[i] or 0 for v in values) for i in range(3)]
            if max(sums) <= 2**63 - 1:  # an MBM sum past int64 is classified too
                expected = GroupReading(sums[0], sums[1], sums[2], "assigned") if mbm else (
                    GroupReading(sums[0]))  # fmt: skip
                assert result == expected, (path, domains)
                continue
        # Something to classify: the same answer as a fresh reader's careful read.
        try:
            alone: object = read_group(path, mbm=mbm)
        except ResctrlReadError as err:
            alone = err.reason
        assert (result.reason if isinstance(result, ResctrlReadError) else result) == alone
