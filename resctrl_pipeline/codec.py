"""msgpack codec for :mod:`messages`: a versioned envelope with strict decode limits.

Wire form of every internal message::

    {"v": 1, "kind": "PodUp", "src": "nri-listener", "seq": 17, "ts": 1732550000.1,
     "body": {<dataclass fields>}}

Nested snapshot entries are encoded as maps of their fields. Decoding checks the
envelope, the kind (unknown → :class:`DecodeError`), and the type of every field;
unknown body fields are ignored so the format can grow. Limits on total size, string,
array and map lengths (msgpack's own nesting limit applies as well) bound what a
foreign process can make us allocate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from resctrl_pipeline import messages as m
from resctrl_pipeline.errors import DecodeError

__all__ = ["MAX_MESSAGE_BYTES", "WIRE_VERSION", "Envelope", "decode", "encode"]

WIRE_VERSION = 1
#: Largest message accepted on any internal socket (also the sockets' ZMQ_MAXMSGSIZE).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_MAX_STR = 1024 * 1024
_MAX_ITEMS = 4 * 1024 * 1024

_KINDS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        m.PodUp, m.PodDown, m.ContainerUp, m.ContainerDown, m.LifecycleSnapshot,
        m.PodLabels, m.PodLabelsGone, m.MetadataSnapshot,
        m.GroupState, m.GroupGone, m.GroupSnapshot,
        m.OccupancyBatch, m.ActorStats, m.PodSummary,
    )
}  # fmt: skip

# Element type of each tuple-of-dataclass field (snapshots).
_NESTED: dict[tuple[type[Any], str], type[Any]] = {
    (m.LifecycleSnapshot, "pods"): m.PodUp,
    (m.LifecycleSnapshot, "containers"): m.ContainerUp,
    (m.MetadataSnapshot, "pods"): m.PodLabels,
    (m.GroupSnapshot, "states"): m.GroupState,
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded message with its envelope fields."""

    kind: str
    src: str
    seq: int
    ts: float
    body: m.Message


def encode(msg: m.Message, src: str = "", seq: int = 0, ts: float = 0.0) -> bytes:
    """Encode one message with its envelope into msgpack bytes."""
    body = _to_plain(msg)
    env = {"v": WIRE_VERSION, "kind": type(msg).__name__, "src": src, "seq": seq, "ts": ts,
           "body": body}  # fmt: skip
    data: bytes = msgpack.packb(env, use_bin_type=True)
    return data


class _Field(NamedTuple):
    name: str
    annotation: str  # as a string: the messages use future annotations
    required: bool
    nested: type[Any] | None  # element type of a tuple-of-dataclass field


_FIELDS: dict[type[Any], tuple[_Field, ...]] = {}


def _fields(cls: type[Any]) -> tuple[_Field, ...]:
    """What the codec needs of each field of ``cls``, worked out once per class
    (``dataclasses.fields`` per message and per snapshot entry was half of decoding)."""
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = tuple(
            _Field(
                f.name,
                str(f.type),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                _NESTED.get((cls, f.name)),
            )
            for f in dataclasses.fields(cls)
        )
    return fields


def _to_plain(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in _fields(type(msg)):
        value = getattr(msg, f.name)
        if f.nested is not None:
            value = [_to_plain(item) for item in value]
        out[f.name] = value
    return out


def decode(data: bytes) -> Envelope:
    """Decode and validate one message.

    Raises:
        DecodeError: oversized, not msgpack, wrong envelope, unknown kind, a field of
            the wrong type, or nested deeper than msgpack allows.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        env = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True,
            max_str_len=_MAX_STR, max_bin_len=_MAX_STR,
            max_array_len=_MAX_ITEMS, max_map_len=_MAX_ITEMS, max_ext_len=0,
        )  # fmt: skip
    except Exception as err:  # msgpack raises a zoo of types (ValueError, StackError, …)
        raise DecodeError(f"not a valid msgpack message: {type(err).__name__}: {err}") from err
    if not isinstance(env, dict):
        raise DecodeError("envelope is not a map")
    if env.get("v") != WIRE_VERSION:
        raise DecodeError(f"unsupported wire version {env.get('v')!r}")
    kind = env.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None or not isinstance(kind, str):
        raise DecodeError(f"unknown message kind {str(kind)[:64]!r}")
    src, seq, ts = env.get("src", ""), env.get("seq", 0), env.get("ts", 0.0)
    if not isinstance(src, str) or not _is_int(seq) or not isinstance(ts, int | float):
        raise DecodeError("malformed envelope fields")
    body = _from_plain(cls, env.get("body"))
    return Envelope(kind=kind, src=src[:64], seq=seq, ts=float(ts), body=body)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _from_plain(cls: type[Any], body: object) -> Any:
    if not isinstance(body, dict):
        raise DecodeError(f"{cls.__name__}: body is not a map")
    kwargs: dict[str, Any] = {}
    for f in _fields(cls):
        if f.name not in body:
            if f.required:
                raise DecodeError(f"{cls.__name__}: missing field {f.name!r}")
            continue
        value = body[f.name]
        if f.nested is not None:
            if not isinstance(value, list):
                raise DecodeError(f"{cls.__name__}.{f.name}: expected a list")
            kwargs[f.name] = tuple(_from_plain(f.nested, item) for item in value)
        else:
            kwargs[f.name] = _check(cls.__name__, f.name, f.annotation, value)
    return cls(**kwargs)


# Exact types: msgpack makes no subclasses, and bool (a subclass of int) must not
# pass for a number. The set of types is built in C, which keeps a heartbeat's ~100
# map entries cheap to check (the supervisor decodes four of them a second).
_STR = frozenset({str})
_NUM = frozenset({int, float})
_BOOL = frozenset({bool})


def _types(items: Iterable[object]) -> set[type]:
    return set(map(type, items))


def _check(owner: str, name: str, annotation: str, value: object) -> object:
    """Check ``value`` against the field's annotation (as a string: future annotations)."""
    ok: bool
    if annotation == "str":
        ok = isinstance(value, str)
    elif annotation == "int":
        ok = _is_int(value)
    elif annotation == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif annotation == "str | None":
        ok = value is None or isinstance(value, str)
    elif annotation == "tuple[str, ...]":
        ok = isinstance(value, list) and _types(value) <= _STR
        if ok and isinstance(value, list):
            value = tuple(value)
    elif annotation == "dict[str, list[Any]]":
        ok = _valid_columns(value)
    elif annotation == "dict[str, float]":
        ok = isinstance(value, dict) and _types(value) <= _STR and _types(value.values()) <= _NUM
    elif annotation == "dict[str, bool]":
        ok = isinstance(value, dict) and _types(value) <= _STR and _types(value.values()) <= _BOOL
    elif annotation == "dict[str, str]":
        ok = isinstance(value, dict) and _types(value) <= _STR and _types(value.values()) <= _STR
    else:  # pragma: no cover - a new field type must be taught to the codec
        raise DecodeError(f"{owner}.{name}: codec does not know type {annotation}")
    if not ok:
        raise DecodeError(f"{owner}.{name}: expected {annotation}, got {type(value).__name__}")
    return value


def _valid_columns(value: object) -> bool:
    # Column contents are checked by the writer against the schema; here only shape.
    if not isinstance(value, dict):
        return False
    lengths = set()
    for key, col in value.items():
        if not isinstance(key, str) or not isinstance(col, list):
            return False
        lengths.add(len(col))
    return len(lengths) <= 1
