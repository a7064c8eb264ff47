"""Bad values where the pipeline reads them: configuration (every key, every kind of
wrong value: exit 2 naming the key and the value) and counter files (garbage, huge and
negative numbers: no row, ``read_errors`` counted by reason, no crash)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from typing import Any, cast

import pytest
from click.testing import CliRunner

from resctrl_pipeline.cli import main
from resctrl_pipeline.config import KEYS
from tests.abuse.conftest import Witness
from tests.faults.harness import PREFIX
from tests.prerequisites import requires
from tests.support import poll_until

# --- configuration ------------------------------------------------------------------

#: TOML literals no key accepts.
EVERY_KEY_REFUSES = [
    "[1, 2]",
    "nan",
    "-1",
    "-inf",
    "inf",
    "1979-05-27T07:32:00Z",
    "{ x = 1 }",
    '"\\u0000"',
    '"x\\ny"',
    f'"{"z" * 5000}"',
]
_DURATION = ['"0s"', '"-1s"', "0", '"1 fortnight"', '"8d"', '"1e3s"', '"ms"', "true", '""', "1e400"]
_BYTES = ['"0"', '"-5MiB"', '"1.5GiB"', '"1TiB"', '"MiB"', "0", "true", '""', "1.5"]
_PATH = ['"relative/path"', '""', '"/ok\\nno"', "true", "5"]
BAD: dict[str, list[str]] = {
    "sampling.interval": _DURATION,
    "reconcile.retry_interval": _DURATION,
    "health.interval": _DURATION,
    "output.rotate_interval": _DURATION,
    "output.flush_interval": _DURATION,
    "output.max_file_bytes": _BYTES,
    "output.spool_max_bytes": _BYTES,
    "pipeline.channel_capacity": [
        "0",
        "1000001",
        "9223372036854775807",
        '"many"',
        "1.5",
        "true",
        '""',
    ],
    "pipeline.max_consecutive_hook_errors": ["0", "1000001", '"many"', "1.5", "true", '""'],
    "pipeline.runtime_dir": _PATH,
    "resctrl.root": _PATH,
    "cgroup.root": _PATH,
    "nri.socket": _PATH,
    "output.spool_dir": _PATH,
    "resctrl.group_prefix": ['""', '"../x"', '"a/b"', '".hidden"', f'"{"p" * 33}"', '"ünï"'],
    "nri.plugin_name": ['""', '"a b"', '"../x"', f'"{"n" * 65}"'],
    "nri.plugin_index": ['"1"', '"100"', '"ab"', "10", '""'],
    "output.dir": ['""', '"s3://"', '"s3://UPPER/x"', '"s3://a/b"', '"x\\ny"', "7"],
    "output.prefix": ['".hidden"', '"a/b"', '"../x"', f'"{"q" * 65}"', '"sp ace"'],
    "output.compression": ['"brotli"', '""', "1"],
    "output.partitioning": ['"daily"', '""'],
    "output.s3_endpoint": ['"ftp://x"', '"http://x/path?q=1"', '"http://a b"', "1"],
    "output.s3_region": ['"eu west"', '"../x"', f'"{"r" * 65}"'],
    "output.s3_path_style": ['"maybe"', "2", '""'],
    "output.per_domain": ['"maybe"', "2", '""'],
    "sampling.cpu": ['"first"', '"-1"', "4096", "true", "1.5", '""', '"nonе"'],
    "http.pod_metrics": ['"maybe"', "2", '""'],
    "output.pod_labels": ['"sp ace"', '["a.b", "a_b"]', "2", '["UPPER.example/x"]', '[1]',
                          "[" + ", ".join(f'"k{i}"' for i in range(33)) + "]"],
    "http.addr": ['"8080"', '"localhost"', '"127.0.0.1:99999"', '":80"', '"h:-1"', "8080"],
    "node.name": ['"a/b"', '"../x"', '"sp ace"', f'"{"n" * 254}"'],
    "log.level": ['"verbose"', '""', "10"],
    "resctrl.mbm_assign": ['""', '"a b"', '"=x"', "[1]", "5", f'"{",".join(["n"] * 65)}"'],
    "resctrl.runtime_groups": ['"always"', '""', "1"],
    "output.s3_ca_bundle": ['"relative.pem"', '"/ok\\nno"', "1"],
    "output.s3_proxy": ['"ftp://p:1"', '"http://a b"', '"proxy:3128"', "1"],
    "output.s3_max_attempts": ["0", "21", '"many"', "1.5", "true"],
    "supervisor.liveness_timeout": [*_DURATION, '"2s"', '"2999ms"'],
}


def _cases() -> list[tuple[str, str]]:
    out = [(key, lit) for key, lits in BAD.items() for lit in lits]
    out += [(k.name, lit) for k in KEYS for lit in EVERY_KEY_REFUSES]
    out += [("no.such_key", '"x"'), ("sampling.intervall", '"1s"')]
    return out


def _toml(key: str, literal: str) -> str:
    table, _, leaf = key.rpartition(".")
    return f"[{table}]\n{leaf} = {literal}\n"


def _named(key: str, literal: str) -> tuple[str, str]:
    """The key and the value repr that the error must name."""
    value: Any = tomllib.loads(f"v = {literal}")["v"]
    if isinstance(value, dict):  # an inline table: its leaves are unknown keys
        sub, inner = next(iter(value.items()))
        return f"{key}.{sub}", repr(inner)
    return key, "nan" if isinstance(value, float) and math.isnan(value) else repr(value)


def test_every_key_refuses_every_kind_of_wrong_value() -> None:
    """Through ``resctrl-pipeline config`` in-process (the same loading as ``up``)."""
    assert set(BAD) == {k.name for k in KEYS}, "a key has no bad values listed"
    runner = CliRunner()
    tried = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bad.toml")
        for key, literal in _cases():
            with open(path, "w") as f:
                f.write(_toml(key, literal))
            # (No environment value may stand in for the file's: AWS_CA_BUNDLE often is set.)
            result = runner.invoke(
                main, ["config", "--config", path], env={"NODE_NAME": "", "AWS_CA_BUNDLE": None}
            )
            name, shown = _named(key, literal)
            assert result.exit_code == 2, (key, literal, result.output)
            err = result.stderr
            assert err.startswith("error: ") and name in err, (key, literal, err)
            assert shown[:200] in err, (key, literal, shown, err)
            assert "Traceback" not in err
            tried += 1
    print(f"\nconfiguration: {tried} bad values over {len(KEYS)} keys refused with exit 2")


@pytest.mark.parametrize(
    ("env", "flags", "key"),
    [
        ({"RESCTRL_SAMPLING_INTERVAL": "0ms"}, [], "sampling.interval"),
        ({"RESCTRL_CHANNEL_CAPACITY": "-3"}, [], "pipeline.channel_capacity"),
        ({"NRI_SOCKET_PATH": "relative.sock"}, [], "nri.socket"),
        ({}, ["--sampling-interval", "-5s"], "sampling.interval"),
        ({}, ["--http-addr", "nowhere"], "http.addr"),
        ({}, ["--group-prefix", "../"], "resctrl.group_prefix"),
    ],
)
def test_environment_and_flags_are_checked_as_strictly(
    env: dict[str, str], flags: list[str], key: str
) -> None:
    result = CliRunner().invoke(main, ["config", *flags], env=env)
    assert result.exit_code == 2 and key in result.stderr, result.output


@pytest.mark.slow
def test_up_exits_2_before_touching_anything() -> None:
    with tempfile.TemporaryDirectory(prefix="rp-a-", dir="/tmp") as tmp:
        path = os.path.join(tmp, "bad.toml")
        with open(path, "w") as f:
            f.write(_toml("output.flush_interval", '"soon"'))
        run_dir = os.path.join(tmp, "run")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "resctrl_pipeline.cli",
                "up",
                "--config",
                path,
                "--runtime-dir",
                run_dir,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "output.flush_interval = 'soon'" in done.stderr
        assert not os.path.exists(run_dir)


# --- counter files --------------------------------------------------------------------

#: What a counter file shows → the read_errors reason it must be counted under.
COUNTER_VALUES: list[tuple[object, str]] = [
    (2**64, "garbage"),
    (10**30, "garbage"),
    (-5, "garbage"),
    (-(2**63), "garbage"),
    ("12abc", "garbage"),
    ("", "garbage"),
    ("0x10", "garbage"),
    ("5 5", "garbage"),
    ("\x00", "garbage"),
    ("+5", "garbage"),
    ("1_000", "garbage"),
    ("٣", "garbage"),
    ("9" * 60, "garbage"),
    ("Unavailable", "unavailable"),
    ("Error", "error"),
    ("Unassigned", "unassigned"),
]


@pytest.mark.slow
@requires("fuse")
def test_counter_garbage_huge_and_negative(pipeline: Witness) -> None:
    h = pipeline.h
    tree = h.node.fs.tree
    pods = h.sleep_pods(len(COUNTER_VALUES) + 1, namespace="counters")
    h.wait_groups(pods)
    overflow = pods[-1]  # every domain valid, the sum over the domains is not
    before = {r: h.counter("sampler", f"read_errors_{r}") for _, r in COUNTER_VALUES}
    for pod, (value, _) in zip(pods, COUNTER_VALUES, strict=False):
        tree.set_counter(PREFIX + pod.uid, "llc_occupancy", 0, cast(Any, value))
    for domain in (0, 1):
        tree.set_counter(PREFIX + overflow.uid, "llc_occupancy", domain, 2**63 - 1)
    pinned_at = time.time_ns()
    want: dict[str, int] = {}
    for _, reason in [*COUNTER_VALUES, (None, "garbage")]:
        want[reason] = want.get(reason, 0) + 1

    def counted() -> bool:
        return all(
            h.counter("sampler", f"read_errors_{r}") - before.get(r, 0) >= 3 * n
            for r, n in want.items()
        )

    poll_until(counted, 20, what="three ticks of read errors for every pinned pod")
    rows = h.rotate_and_rows()
    late = [
        r
        for r in rows
        if r["pod_uid"] in {p.uid for p in pods}
        and int(r["start_timestamp"]) > pinned_at + int(0.5e9)
    ]
    assert not late, {(r["pod_uid"], r["llc_occupancy_bytes"]) for r in late}
    for pod in pods:
        for domain in (0, 1):
            tree.set_counter(PREFIX + pod.uid, "llc_occupancy", domain, None)
    mark = time.time_ns()
    poll_until(
        lambda: (
            {p.uid for p in pods}
            <= {r["pod_uid"] for r in h.rotate_and_rows() if int(r["start_timestamp"]) > mark}
        ),
        30,
        what="rows again once the counters are numbers",
    )
    for pod in pods:
        h.node.stop_pod(pod)
    pipeline.check()
