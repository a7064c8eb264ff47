"""Pod uid validation: hostile uids never become paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resctrl_pipeline.podid import (
    InvalidPodUid,
    InvalidPrefix,
    group_name,
    is_valid_uid,
    uid_from_group_name,
    validate_prefix,
    validate_uid,
)

GOOD = [
    "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",  # a real Kubernetes uid
    "a",
    "A_b-9",
    "x" * 63,
    "5d41402abc4b2a76b9719d911017c592",  # static pod uid: a hash
]

HOSTILE = [
    "",
    "..",
    ".",
    "../../etc",
    "a/b",
    "/",
    "a\0b",
    "abc\n",
    "abc\r",
    "\nabc",
    "a b",
    "x" * 64,
    "x" * 100_000,
    "pod:uid",
    "ü",
    "é" * 5,
    "١٢٣",  # Arabic-Indic digits: \d would accept them
    "\uff41\uff42\uff43",  # fullwidth letters
    "\u212a",  # Kelvin sign, equal to "k" under case-folding
    "a\tb",
    "a.b",
    "*",
]


@pytest.mark.parametrize("uid", GOOD)
def test_plain_kubernetes_uids_are_accepted(uid: str) -> None:
    assert is_valid_uid(uid)
    assert validate_uid(uid) == uid
    assert group_name("pod_", uid) == "pod_" + uid


@pytest.mark.parametrize("uid", HOSTILE)
def test_hostile_uids_are_rejected(uid: str) -> None:
    assert not is_valid_uid(uid)
    with pytest.raises(InvalidPodUid):
        validate_uid(uid)
    with pytest.raises(InvalidPodUid):
        group_name("pod_", uid)


def test_leading_dash_is_a_valid_uid_because_the_name_starts_with_the_prefix() -> None:
    # The group name is always prefix + uid, so a leading "-" never reaches a command
    # line as an option; the rule stays the plain character class.
    assert group_name("pod_", "-rf") == "pod_-rf"


def test_rejection_message_is_bounded_and_escaped() -> None:
    err = InvalidPodUid("a\nb" + "x" * 10_000)
    text = str(err)
    assert "\n" not in text
    assert len(text) < 200


@given(st.text())
def test_any_accepted_uid_is_one_safe_path_component(uid: str) -> None:
    if not is_valid_uid(uid):
        with pytest.raises(InvalidPodUid):
            group_name("pod_", uid)
        return
    name = group_name("pod_", uid)
    assert "/" not in name and "\0" not in name and name not in (".", "..")
    assert name.isascii() and name.isprintable()
    assert uid_from_group_name("pod_", name) == uid


@pytest.mark.parametrize(
    ("name", "uid"),
    [
        ("pod_abc", "abc"),
        ("pod_", None),
        ("foreign_group", None),
        ("pod_a.b", None),
        ("pod_" + "x" * 64, None),
        ("pox_abc", None),
    ],
)
def test_uid_from_group_name(name: str, uid: str | None) -> None:
    assert uid_from_group_name("pod_", name) == uid


@pytest.mark.parametrize("prefix", ["pod_", "rp.pod_", "x", "A-1_"])
def test_safe_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", ".", "..", ".pod_", "a/b", "pod\0", "p" * 33, "pöd_"])
def test_unsafe_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidPrefix):
        validate_prefix(prefix)
