"""Configuration: defaults < TOML file < environment < command line, strictly checked.

Two layers (style point 12): :func:`load` gathers raw values from each source,
remembering where each came from, and :func:`resolve` turns them into a frozen,
validated :class:`Config`. Unknown keys and invalid values raise
:class:`~resctrl_pipeline.errors.ConfigError` naming the key and the value; nothing is
silently replaced by a default.

Every key is declared once in :data:`KEYS`; the example config, the ``config``
command and the docs' reference table are all generated from it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.schema import label_column

__all__ = [
    "KEYS",
    "Config",
    "Key",
    "Sources",
    "dump_handoff",
    "load",
    "load_handoff",
    "parse_bytes",
    "parse_duration",
    "resolve",
]

_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_BYTES = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?\s*$")
_BYTE_UNITS = {
    None: 1, "B": 1, "k": 1024, "K": 1024, "KiB": 1024, "KB": 1000,
    "M": 1024**2, "MiB": 1024**2, "MB": 1000**2,
    "G": 1024**3, "GiB": 1024**3, "GB": 1000**3,
}  # fmt: skip
_LOG_LEVELS = ("debug", "info", "warning", "error")
_COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "none")
_PARTITIONINGS = ("none", "hive")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def parse_duration(text: object) -> float:
    """Parse ``250ms``, ``1s``, ``2m``, ``1h``, sums such as ``1m30s`` (or a bare number
    of seconds) → seconds.

    Raises:
        ValueError: not a positive duration in one of those forms.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 250ms, 1s, 2m or 1h")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        compact = re.sub(r"\s+", "", str(text))
        if not _DURATION.match(compact):
            raise ValueError("expected a duration such as 250ms, 1s, 2m, 1h or 1m30s")
        seconds = sum(float(n) * _DURATION_UNITS[unit]
                      for n, unit in _DURATION_PART.findall(compact))  # fmt: skip
    if not seconds > 0 or seconds > 7 * 86400:
        raise ValueError("a duration must be above 0 and at most 7 days")
    return seconds


def parse_bytes(text: object) -> int:
    """Parse ``256MiB``, ``1GB``, ``4096`` → bytes (must be positive).

    Raises:
        ValueError: not a positive size.
    """
    if isinstance(text, bool):
        raise ValueError("expected a size such as 4096, 64MiB or 1GiB")
    if isinstance(text, int):
        value = text
    else:
        m = _BYTES.match(str(text))
        if not m:
            raise ValueError("expected a size such as 4096, 64MiB or 1GiB")
        value = int(m.group(1)) * _BYTE_UNITS[m.group(2)]
    if value <= 0:
        raise ValueError("a size must be positive")
    return value


def _positive_int(limit: int) -> Callable[[object], int]:
    def parse(text: object) -> int:
        if isinstance(text, bool):
            raise ValueError("expected a positive integer")
        try:
            value = int(str(text).strip()) if not isinstance(text, int) else text
        except ValueError as err:
            raise ValueError("expected a positive integer") from err
        if not 0 < value <= limit:
            raise ValueError(f"must be between 1 and {limit}")
        return value

    return parse


def _cpu(text: object) -> int | None:
    """A CPU number (0–4095), or ``none`` (None). Whether the CPU exists on this
    machine is the sampler's to find out (it logs an error and runs unpinned)."""
    what = "expected none or a CPU number (0 to 4095)"
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(what)
    if isinstance(text, str) and text.strip() == "none":
        return None
    try:
        value = text if isinstance(text, int) else int(text.strip())
    except ValueError as err:
        raise ValueError(what) from err
    if not 0 <= value <= 4095:
        raise ValueError(what)
    return value


def _text(pattern: str, what: str, max_len: int = 4096) -> Callable[[object], str]:
    regex = re.compile(pattern)

    def parse(text: object) -> str:
        if not isinstance(text, str):
            raise ValueError(f"expected {what}")
        if len(text) > max_len or "\x00" in text or not regex.fullmatch(text):
            raise ValueError(f"expected {what}")
        return text

    return parse


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def parse(text: object) -> str:
        value = str(text).strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _bool(text: object) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError("expected true or false")
    return value in _TRUE


_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)


def _label_keys(value: object) -> tuple[str, ...]:
    """Kubernetes label keys (a list, or one comma-separated string), at most 32, whose
    column names (``schema.label_column``) differ."""
    if isinstance(value, str):
        items: list[object] = [k.strip() for k in value.split(",") if k.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError("expected a list of label keys")
    if len(items) > 32:
        raise ValueError("at most 32 label keys")
    keys: list[str] = []
    columns: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str) or not _LABEL_KEY.fullmatch(item):
            raise ValueError(f"{item!r} is not a Kubernetes label key")
        column = label_column(item)
        if column in columns:
            raise ValueError(f"{item!r} and {columns[column]!r} give the same column {column}")
        columns[column] = item
        keys.append(item)
    return tuple(keys)


def _http_addr(text: object) -> str:
    if not isinstance(text, str):
        raise ValueError("expected HOST:PORT")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT with a port from 0 to 65535")
    return text


def _liveness_timeout(text: object) -> float:
    seconds = parse_duration(text)
    if seconds < 3:
        raise ValueError("must be at least 3s (three heartbeat intervals)")
    return seconds


def _output(text: object) -> str:
    value = _text(r"[^\n]+", "a directory path or s3://bucket/prefix")(text)
    if value.startswith("s3://") and not re.fullmatch(r"s3://[a-z0-9.\-]{3,63}(/.*)?", value):
        raise ValueError("expected s3://bucket/prefix with a valid bucket name")
    return value


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL = re.compile(
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
    r"=([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
)


def _mbm_assign(value: object) -> tuple[str, ...]:
    """``auto``, ``none``, or selectors: namespaces and ``key=value`` pod labels.

    A list in TOML, or a comma-separated string (environment, command line).
    """
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError("expected auto, none, or a list of namespaces and key=value labels")
    words = tuple(i.strip() for i in items if i.strip())
    if words in (("auto",), ("none",)):
        return words
    bad = [w for w in words if not (_NAMESPACE.fullmatch(w) or _LABEL.fullmatch(w))]
    if not words or bad or len(words) > 64:
        raise ValueError(
            f"expected auto, none, or up to 64 namespaces and key=value labels"
            f"{f' (not one: {bad[0][:80]!r})' if bad else ''}"
        )
    return words


_path = _text(r"/[^\n]*", "an absolute path")
_any_path = _text(r"[^\n]+", "a path")
# Scheme, host (name, IPv4 or [IPv6]) and port only: the bucket and key go into the
# path themselves, and nothing else of this text reaches a request.
_endpoint = _text(
    r"(https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?/?)?",
    "empty or http(s)://host[:port]",
    max_len=300,
)


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: its name, env variable, default, parser and meaning."""

    name: str
    default: object
    parse: Callable[[object], Any]
    help: str
    env: str | None = None
    flag: str | None = None


KEYS: tuple[Key, ...] = (
    Key("sampling.interval", "1s", parse_duration,
        "How often every pod's counters are read.", "RESCTRL_SAMPLING_INTERVAL",
        "--sampling-interval"),
    Key("sampling.cpu", "none", _cpu,
        "Pin the sampler process to this CPU number (keep other work off it, e.g. with "
        "a cpuset, for sampling intervals of a few ms); none leaves it to the scheduler.",
        "RESCTRL_SAMPLING_CPU"),
    Key("reconcile.retry_interval", "10s", parse_duration,
        "Re-check of every container's threads, retry of failed group creations, and "
        "the period of full-state snapshots between actors.", "RESCTRL_RETRY_INTERVAL",
        "--retry-interval"),
    Key("health.interval", "60s", parse_duration,
        "How often the health summary is logged.", "RESCTRL_HEALTH_INTERVAL"),
    Key("pipeline.channel_capacity", 256, _positive_int(1_000_000),
        "High-water mark (messages) of each data edge; beyond it messages are dropped "
        "and counted.", "RESCTRL_CHANNEL_CAPACITY"),
    Key("pipeline.max_consecutive_hook_errors", 5, _positive_int(1_000_000),
        "Failures in a row of one actor's handler on one input (an edge, a timer) after "
        "which the actor exits and is restarted; single failures only drop that input."),
    Key("pipeline.runtime_dir", "/run/resctrl-pipeline", _path,
        "Private directory (mode 0700) for the internal sockets.", None, "--runtime-dir"),
    Key("resctrl.root", "/sys/fs/resctrl", _path,
        "Mount point of the resctrl filesystem.", "RESCTRL_MOUNT", "--resctrl-root"),
    Key("resctrl.group_prefix", "pod_", _text(r"[A-Za-z0-9_-]{1,32}", "1-32 of [A-Za-z0-9_-]"),
        "Name prefix of the monitoring groups this agent owns; others are never touched.",
        None, "--group-prefix"),
    Key("resctrl.mbm_assign", "auto", _mbm_assign,
        "Who gets MBM counters where they must be assigned (AMD ABMC, mbm_event mode): "
        "auto (pods in start order while counters last), none (no pod), or a list of "
        "namespaces and key=value pod labels whose pods get them first, then the rest."),
    Key("resctrl.runtime_groups", "auto", _choice(("auto", "attribute", "move")),
        "Monitoring groups a runtime made for its containers (runc/crun "
        "enableMonitoring): attribute (read them for the pod, move no thread), move "
        "(threads into the pod's group), auto (attribute where such groups exist)."),
    Key("cgroup.root", "/sys/fs/cgroup", _path,
        "Root of the cgroup filesystem (v2 unified or v1 hierarchies).", None, "--cgroup-root"),
    Key("nri.socket", "/var/run/nri/nri.sock", _path,
        "containerd's NRI socket.", "NRI_SOCKET_PATH", "--nri-socket"),
    Key("nri.plugin_name", "resctrl-pipeline", _text(r"[A-Za-z0-9._-]{1,64}", "a plugin name"),
        "Name under which the listener registers with the runtime."),
    Key("nri.plugin_index", "10", _text(r"[0-9]{2}", "two digits, e.g. 10"),
        "Two-digit NRI plugin index (ordering among plugins)."),
    Key("output.dir", "/var/lib/resctrl-pipeline", _output,
        "Directory for Parquet files (or s3://bucket/prefix).", None, "--output"),
    Key("output.prefix", "resctrl-occupancy-",
        _text(r"([A-Za-z0-9_-][A-Za-z0-9._-]{0,63})?", "[A-Za-z0-9._-], not starting with a dot"),
        "File name prefix of the Parquet files.", None, "--prefix"),
    Key("output.rotate_interval", "1h", parse_duration,
        "A file older than this is finalised and a new one started."),
    Key("output.max_file_bytes", "256MiB", parse_bytes,
        "A file that reaches this size is finalised and a new one started."),
    Key("output.flush_interval", "10s", parse_duration,
        "Buffered rows are made durable at least this often (the most a kill -9 loses)."),
    Key("output.compression", "zstd", _choice(_COMPRESSIONS), "Parquet compression codec."),
    Key("output.per_domain", False, _bool,
        "Add the column 'domains': per row, each L3 domain's occupancy and bandwidth."),
    Key("output.pod_labels", [], _label_keys,
        "Pod label keys that become columns (label_<key, [^A-Za-z0-9] as _>), e.g. "
        "[\"app.kubernetes.io/name\"]; a comma-separated list in the env or a flag.",
        "RESCTRL_POD_LABELS", "--pod-labels"),
    Key("output.spool_dir", "/var/lib/resctrl-pipeline/spool", _path,
        "With s3:// output: where files are written and finalised, and kept until "
        "uploaded (put it on a disk that survives restarts). Unused otherwise."),
    Key("output.spool_max_bytes", "1GiB", parse_bytes,
        "With s3:// output: the most bytes of finalised files waiting for upload; "
        "beyond it the oldest are deleted without upload (counted, logged)."),
    Key("output.partitioning", "none", _choice(_PARTITIONINGS),
        "With s3:// output: object keys <prefix>/<file> (none) or "
        "<prefix>/node=<node>/date=<YYYY-MM-DD>/<file> (hive)."),
    Key("output.s3_endpoint", "", _endpoint,
        "S3 endpoint URL (MinIO and friends); empty = AWS, https://s3.<region>.amazonaws.com.",
        "AWS_ENDPOINT_URL"),
    Key("output.s3_region", "", _text(r"[A-Za-z0-9_-]{0,64}", "a region name such as eu-west-1"),
        "Region for request signing; empty = AWS_DEFAULT_REGION from the environment, "
        "else us-east-1.", "AWS_REGION"),
    Key("output.s3_path_style", False, _bool,
        "With s3_endpoint: address objects as <endpoint>/<bucket>/<key> instead of "
        "<bucket>.<endpoint>/<key> (most self-hosted stores need true)."),
    Key("output.s3_ca_bundle", "", _text(r"(/[^\n]*)?", "an absolute path or empty"),
        "PEM file with the CAs to trust for the S3 endpoint (private CA); empty = the "
        "system's.", "AWS_CA_BUNDLE"),
    Key("output.s3_proxy", "", _text(r"(https?://[^\s/]+)?/?", "http(s)://[user:pass@]host:port"),
        "HTTP(S) proxy for S3 requests; empty = none."),
    Key("output.s3_max_attempts", 3, _positive_int(20),
        "Attempts per S3 request (the AWS SDK's standard retry strategy) before an upload "
        "fails and waits for the spool's back-off."),
    Key("http.addr", "127.0.0.1:8080", _http_addr,
        "Address of the HTTP endpoints /live /ready /metrics /status /pods.", None,
        "--http-addr"),
    Key("http.pod_metrics", True, _bool,
        "Per-pod series (resctrl_pod_*) on /metrics and the /pods document: the sampler "
        "sends the supervisor each pod's latest reading about once a second.",
        "RESCTRL_POD_METRICS"),
    Key("supervisor.liveness_timeout", "30s", _liveness_timeout,
        "An actor that sends no heartbeat for this long is killed (SIGKILL) and restarted. "
        "A busy actor sends one a second, an idle one every sixth of this (1-5 s); /ready is "
        "503 after three idle periods without one already. At least 3s.",
        "RESCTRL_LIVENESS_TIMEOUT"),
    Key("node.name", "", _text(r"[A-Za-z0-9._-]{0,253}", "a node name"),
        "Node name in file names and metadata; empty = NODE_NAME env or the hostname.",
        "NODE_NAME", "--node-name"),
    Key("log.level", "info", _choice(_LOG_LEVELS), "Log level.", None, "--log-level"),
)  # fmt: skip

_BY_NAME = {k.name: k for k in KEYS}


@dataclass(frozen=True)
class Sources:
    """Raw values per key and the source each came from (``default``, ``file``, …)."""

    values: dict[str, object]
    origin: dict[str, str]


@dataclass(frozen=True, slots=True)
class Config:
    """The validated, immutable configuration every actor receives."""

    sampling_interval: float
    sampling_cpu: int | None
    retry_interval: float
    health_interval: float
    channel_capacity: int
    max_consecutive_hook_errors: int
    runtime_dir: str
    resctrl_root: str
    group_prefix: str
    mbm_assign: tuple[str, ...]
    runtime_groups: str
    cgroup_root: str
    nri_socket: str
    nri_plugin_name: str
    nri_plugin_index: str
    output_dir: str
    output_prefix: str
    rotate_interval: float
    max_file_bytes: int
    flush_interval: float
    compression: str
    per_domain: bool
    pod_labels: tuple[str, ...]
    spool_dir: str
    spool_max_bytes: int
    partitioning: str
    s3_endpoint: str
    s3_region: str
    s3_path_style: bool
    s3_ca_bundle: str
    s3_proxy: str
    s3_max_attempts: int
    http_addr: str
    pod_metrics: bool
    liveness_timeout: float
    node_name: str
    log_level: str


_FIELD_OF = {
    "sampling.interval": "sampling_interval",
    "sampling.cpu": "sampling_cpu",
    "reconcile.retry_interval": "retry_interval",
    "health.interval": "health_interval",
    "pipeline.channel_capacity": "channel_capacity",
    "pipeline.max_consecutive_hook_errors": "max_consecutive_hook_errors",
    "pipeline.runtime_dir": "runtime_dir",
    "resctrl.root": "resctrl_root",
    "resctrl.group_prefix": "group_prefix",
    "resctrl.mbm_assign": "mbm_assign",
    "resctrl.runtime_groups": "runtime_groups",
    "cgroup.root": "cgroup_root",
    "nri.socket": "nri_socket",
    "nri.plugin_name": "nri_plugin_name",
    "nri.plugin_index": "nri_plugin_index",
    "output.dir": "output_dir",
    "output.prefix": "output_prefix",
    "output.rotate_interval": "rotate_interval",
    "output.max_file_bytes": "max_file_bytes",
    "output.flush_interval": "flush_interval",
    "output.compression": "compression",
    "output.per_domain": "per_domain",
    "output.pod_labels": "pod_labels",
    "output.spool_dir": "spool_dir",
    "output.spool_max_bytes": "spool_max_bytes",
    "output.partitioning": "partitioning",
    "output.s3_endpoint": "s3_endpoint",
    "output.s3_region": "s3_region",
    "output.s3_path_style": "s3_path_style",
    "output.s3_ca_bundle": "s3_ca_bundle",
    "output.s3_proxy": "s3_proxy",
    "output.s3_max_attempts": "s3_max_attempts",
    "http.addr": "http_addr",
    "http.pod_metrics": "pod_metrics",
    "supervisor.liveness_timeout": "liveness_timeout",
    "node.name": "node_name",
    "log.level": "log_level",
}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _read_file(path: str | os.PathLike[str]) -> dict[str, object]:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError("--config", str(path), f"cannot read: {err.strerror}") from err
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError("--config", str(path), f"not valid TOML: {err}") from err
    return _flatten(table)


def load(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Sources:
    """Gather raw values from defaults, the TOML file, the environment and flags.

    Args:
        config_file: TOML file (nested tables: ``[sampling] interval = "1s"``).
        environ: environment to read (default ``os.environ``).
        overrides: key name → value from the command line; None values are ignored.

    Raises:
        ConfigError: unreadable file, invalid TOML, or an unknown key.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {k.name: k.default for k in KEYS}
    origin = {k.name: "default" for k in KEYS}
    if config_file is not None:
        for name, value in _read_file(config_file).items():
            if name not in _BY_NAME:
                raise ConfigError(name, value, f"unknown key in {config_file}")
            values[name], origin[name] = value, f"file {config_file}"
    for key in KEYS:
        if key.env and env.get(key.env, "") != "":
            values[key.name], origin[key.name] = env[key.env], f"env {key.env}"
    for name, value in (overrides or {}).items():
        if name not in _BY_NAME:
            raise ConfigError(name, value, "unknown key")
        if value is not None:
            flag = _BY_NAME[name].flag or name
            values[name], origin[name] = value, f"flag {flag}"
    return Sources(values, origin)


def resolve(sources: Sources) -> Config:
    """Validate every raw value and build the frozen :class:`Config`.

    Raises:
        ConfigError: naming the first invalid key, its value and where it came from.
    """
    fields: dict[str, Any] = {}
    for key in KEYS:
        raw = sources.values[key.name]
        try:
            fields[_FIELD_OF[key.name]] = key.parse(raw)
        except ValueError as err:
            raise ConfigError(key.name, raw, f"{err} (from {sources.origin[key.name]})") from err
    if not fields["node_name"]:
        fields["node_name"] = _default_node_name()
    return Config(**fields)


def _default_node_name() -> str:
    # The hostname is trusted less than config: keep only file-name-safe characters.
    name = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:253]
    return name.lstrip(".") or "node"


def render_toml(sources: Sources, with_origin: bool = True) -> str:
    """The effective configuration as TOML, each value commented with its source."""
    lines: list[str] = []
    section = ""
    for key in KEYS:
        table, _, leaf = key.name.rpartition(".")
        if table != section:
            lines.append(f"\n[{table}]")
            section = table
        value = sources.values[key.name]
        text = _toml_value(value)
        note = f"  # {sources.origin[key.name]}" if with_origin else ""
        lines.append(f"{leaf} = {text}{note}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(value: object) -> str:
    # tomli-w quotes and escapes; the line it writes is ``v = <value>``.
    return tomli_w.dumps({"v": value})[len("v = ") :].rstrip("\n")


def dump_handoff(sources: Sources) -> bytes:
    """The effective raw values as handed to the actors: JSON, key name → value.

    JSON rather than TOML because every string the validators accept survives it
    exactly, including control characters and the lone surrogates that stand for
    undecodable bytes of a path from the environment or a flag (TOML cannot hold
    those). The actors validate the values again with :func:`resolve`.
    """
    return json.dumps(sources.values, ensure_ascii=True, sort_keys=True).encode("ascii")


def load_handoff(path: str | os.PathLike[str]) -> Sources:
    """Read what :func:`dump_handoff` wrote (the values ``up`` resolved).

    Raises:
        ConfigError: unreadable, not a JSON object, or an unknown key.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError("--effective-config", str(path), f"cannot read: {err.strerror}") from err
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise ConfigError("--effective-config", str(path), f"not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise ConfigError("--effective-config", str(path), "not a JSON object")
    values: dict[str, object] = {k.name: k.default for k in KEYS}
    origin = {k.name: "default" for k in KEYS}
    for name, value in doc.items():
        if name not in _BY_NAME:
            raise ConfigError(name, value, f"unknown key in {path}")
        values[name], origin[name] = value, "up"
    return Sources(values, origin)


def render_example() -> str:
    """``configs/example.toml``: every key with its default, meaning and env variable."""
    lines = [
        "# resctrl-pipeline configuration: every key with its default.",
        "# Precedence: built-in defaults < this file (--config) < environment < flags.",
        "# Durations: 250ms, 1s, 2m, 1h. Sizes: 4096, 64MiB, 1GiB.",
        "# Generated by `resctrl-pipeline config --example`; unknown keys are errors.",
    ]
    section = ""
    for key in KEYS:
        table, _, leaf = key.name.rpartition(".")
        if table != section:
            lines.append(f"\n[{table}]")
            section = table
        lines.append(f"# {key.help}")
        extra = [f"env {key.env}"] if key.env else []
        extra += [f"flag {key.flag}"] if key.flag else []
        if extra:
            lines.append(f"# ({', '.join(extra)})")
        lines.append(f"{leaf} = {_toml_value(key.default)}")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """The configuration reference table (Markdown) that ``docs/operations.md`` embeds.

    One row per key in :data:`KEYS` order: key, environment variable, flag, default and
    meaning. A test compares the doc with this, so the doc cannot drift from the code.
    """
    lines = [
        "| key | env | flag | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for key in KEYS:
        cells = [
            f"`{key.name}`",
            f"`{key.env}`" if key.env else "",
            f"`{key.flag}`" if key.flag else "",
            f"`{_toml_value(key.default)}`",
            key.help.replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
