"""Pod uids and the resctrl group names derived from them.

A pod uid arrives from the container runtime as untrusted text and becomes part of a
directory name under ``<resctrl root>/mon_groups/``. Only plain Kubernetes uids are
accepted: ASCII letters, digits, ``-`` and ``_``, 1 to 63 characters. Anything else
(``..``, ``/``, NUL, newlines, non-ASCII, empty, too long) is rejected rather than
sanitised, because two different hostile uids must never map to the same group and no
uid may ever name a path outside ``mon_groups/``.

The group prefix is configuration, validated by the same kind of rule, so that
``prefix + uid`` is always a single, harmless path component.
"""

from __future__ import annotations

import re

from resctrl_pipeline.errors import PipelineError

__all__ = [
    "MAX_UID_LENGTH",
    "InvalidPodUid",
    "InvalidPrefix",
    "group_name",
    "is_valid_uid",
    "uid_from_group_name",
    "validate_prefix",
    "validate_uid",
]

MAX_UID_LENGTH = 63
"""Longest accepted uid (a Kubernetes uid is a 36-character UUID)."""

# Explicit ASCII classes: ``\w`` and ``\d`` would accept non-ASCII letters and digits.
_UID_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_UID_LENGTH}}}")
# The prefix may also hold dots (``rp.pod_``) but must not start with one, so that
# ``prefix + uid`` can never be ``.``, ``..`` or a hidden name.
_PREFIX_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,31}")


class InvalidPodUid(PipelineError):
    """A pod uid is not a plain Kubernetes uid; it was not turned into a path."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        # repr() and truncation keep control characters and megabyte uids out of logs.
        shown = uid if len(uid) <= 80 else uid[:80] + "…"
        super().__init__(f"rejected pod uid {shown!r}: not [A-Za-z0-9_-]{{1,63}}")


class InvalidPrefix(PipelineError):
    """The configured group prefix could make group names unsafe or ambiguous."""


def is_valid_uid(uid: str) -> bool:
    """Tell whether ``uid`` is a plain Kubernetes uid.

    Args:
        uid: untrusted text from the runtime.

    Returns:
        True when ``uid`` is 1 to 63 ASCII letters, digits, ``-`` or ``_``.
    """
    # fullmatch, not match + ``$``: ``$`` would also accept a trailing newline.
    return _UID_RE.fullmatch(uid) is not None


def validate_uid(uid: str) -> str:
    """Return ``uid`` unchanged if it is a plain Kubernetes uid.

    Raises:
        InvalidPodUid: the uid is empty, too long, or holds any other character.
    """
    if not is_valid_uid(uid):
        raise InvalidPodUid(uid)
    return uid


def validate_prefix(prefix: str) -> str:
    """Return the group prefix unchanged if it is safe.

    A non-empty prefix is what keeps the reconciler away from groups it does not own,
    so the empty prefix is refused too.

    Raises:
        InvalidPrefix: empty, longer than 32 characters, starting with ``.``, or holding
            characters other than ASCII letters, digits, ``-``, ``_`` and ``.``.
    """
    if _PREFIX_RE.fullmatch(prefix) is None:
        raise InvalidPrefix(
            f"invalid group prefix {prefix!r}: want 1-32 of [A-Za-z0-9_.-], not starting with '.'"
        )
    return prefix


def group_name(prefix: str, uid: str) -> str:
    """Name of the pod's monitoring group: ``prefix + uid``.

    Args:
        prefix: a prefix accepted by :func:`validate_prefix`.
        uid: the pod uid (untrusted).

    Returns:
        A single path component, safe to join under ``mon_groups/``.

    Raises:
        InvalidPodUid: the uid is not a plain Kubernetes uid.
    """
    return prefix + validate_uid(uid)


def uid_from_group_name(prefix: str, name: str) -> str | None:
    """Inverse of :func:`group_name`.

    Returns:
        The uid when ``name`` is ``prefix`` followed by a valid uid; None for names
        without the prefix or with a suffix no valid uid could have produced.
    """
    if not name.startswith(prefix):
        return None
    uid = name[len(prefix) :]
    return uid if is_valid_uid(uid) else None
