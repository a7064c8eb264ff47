"""Configuration: precedence, strictness, env keys (L0b 8), the ``config`` command."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from resctrl_pipeline.cli import main
from resctrl_pipeline.config import (
    KEYS,
    dump_handoff,
    load,
    load_handoff,
    parse_bytes,
    parse_duration,
    render_example,
    render_toml,
    resolve,
)
from resctrl_pipeline.errors import ConfigError


def test_l0b_8_env_configuration() -> None:
    env = {
        "RESCTRL_SAMPLING_INTERVAL": "250ms",
        "RESCTRL_RETRY_INTERVAL": "3s",
        "RESCTRL_HEALTH_INTERVAL": "2m",
        "RESCTRL_CHANNEL_CAPACITY": "17",
        "RESCTRL_MOUNT": "/mnt/resctrl",
        "NRI_SOCKET_PATH": "/tmp/nri.sock",
    }
    cfg = resolve(load(environ=env))
    assert cfg.sampling_interval == 0.25
    assert cfg.retry_interval == 3.0
    assert cfg.health_interval == 120.0
    assert cfg.channel_capacity == 17
    assert cfg.resctrl_root == "/mnt/resctrl"
    assert cfg.nri_socket == "/tmp/nri.sock"


def test_defaults_match_the_design_table() -> None:
    cfg = resolve(load(environ={}))
    assert (cfg.sampling_interval, cfg.retry_interval, cfg.health_interval) == (1, 10, 60)
    assert cfg.channel_capacity == 256
    assert cfg.resctrl_root == "/sys/fs/resctrl" and cfg.group_prefix == "pod_"
    assert cfg.cgroup_root == "/sys/fs/cgroup" and cfg.nri_socket == "/var/run/nri/nri.sock"
    assert cfg.runtime_dir == "/run/resctrl-pipeline"
    assert (cfg.output_dir, cfg.output_prefix) == ("/var/lib/resctrl-pipeline",
                                                   "resctrl-occupancy-")  # fmt: skip
    assert (cfg.rotate_interval, cfg.max_file_bytes, cfg.flush_interval) == (3600, 256 << 20, 10)
    assert cfg.http_addr == "127.0.0.1:8080"


def test_precedence_default_file_env_flag(tmp_path: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[sampling]\ninterval = "2s"\n[health]\ninterval = "5s"\n'
                 '[reconcile]\nretry_interval = "7s"\n')  # fmt: skip
    src = load(f, environ={"RESCTRL_HEALTH_INTERVAL": "6s", "RESCTRL_RETRY_INTERVAL": "8s"},
               overrides={"reconcile.retry_interval": "9s"})  # fmt: skip
    cfg = resolve(src)
    assert cfg.sampling_interval == 2 and src.origin["sampling.interval"].startswith("file")
    assert (
        cfg.health_interval == 6 and src.origin["health.interval"] == "env RESCTRL_HEALTH_INTERVAL"
    )
    assert (
        cfg.retry_interval == 9
        and src.origin["reconcile.retry_interval"] == "flag --retry-interval"
    )
    assert src.origin["http.addr"] == "default"


def test_unknown_key_in_file_is_an_error(tmp_path: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[sampling]\nintervall = "2s"\n')
    with pytest.raises(ConfigError) as exc:
        load(f, environ={})
    assert exc.value.key == "sampling.intervall"


@pytest.mark.parametrize(
    ("key", "value"),
    [("sampling.interval", "fast"), ("sampling.interval", "0s"), ("sampling.interval", True),
     ("pipeline.channel_capacity", "0"), ("pipeline.channel_capacity", "-3"),
     ("pipeline.channel_capacity", "many"), ("http.addr", "localhost"),
     ("http.addr", "h:99999"), ("resctrl.root", "relative/path"), ("resctrl.root", 5),
     ("resctrl.group_prefix", "../x"), ("output.max_file_bytes", "lots"),
     ("output.compression", "rar"), ("log.level", "loud"), ("nri.plugin_index", "1"),
     ("output.dir", "s3://UPPER_bucket"), ("node.name", "a/b")],
)  # fmt: skip
def test_invalid_values_name_key_and_value(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as exc:
        resolve(load(environ={}, overrides={key: value}))
    assert exc.value.key == key
    assert key in str(exc.value) and repr(value) in str(exc.value)


def test_durations_and_sizes() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m") == 120
    assert parse_duration("1h") == 3600
    assert parse_duration("1m30s") == 90
    assert parse_duration("1h30m15s") == 5415
    assert parse_duration("1s500ms") == 1.5
    with pytest.raises(ValueError, match="1m30s"):
        parse_duration("1m30")
    assert parse_bytes("256MiB") == 256 << 20
    assert parse_bytes("1GB") == 10**9


def test_render_toml_roundtrips(tmp_path: str) -> None:
    src = load(environ={"RESCTRL_CHANNEL_CAPACITY": "99"}, overrides={"http.addr": "0.0.0.0:1"})
    f = tmp_path / "eff.toml"
    f.write_text(render_toml(src, with_origin=False))
    assert resolve(load(f, environ={})) == resolve(src)


def test_cli_config_prints_sources(tmp_path: str) -> None:
    result = CliRunner().invoke(main, ["config", "--sampling-interval", "5s"],
                                env={"RESCTRL_MOUNT": "/x"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert 'interval = "5s"  # flag --sampling-interval' in result.output
    assert 'root = "/x"  # env RESCTRL_MOUNT' in result.output
    for key in KEYS:
        assert key.name.rpartition(".")[2] + " = " in result.output


def test_cli_config_shows_the_node_name_that_will_be_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "worker-7")
    result = CliRunner().invoke(main, ["config"], env={"NODE_NAME": ""})
    assert result.exit_code == 0, result.output
    assert 'name = "worker-7"  # default: the hostname' in result.output
    result = CliRunner().invoke(main, ["config"], env={"NODE_NAME": "node-a"})
    assert 'name = "node-a"  # env NODE_NAME' in result.output


def test_cli_bad_value_exits_2_naming_key(tmp_path: str) -> None:
    result = CliRunner().invoke(main, ["config", "--http-addr", "nope"])
    assert result.exit_code == 2
    assert "http.addr" in result.output and "'nope'" in result.output


def test_cli_broken_toml_exits_2(tmp_path: str) -> None:
    f = tmp_path / "broken.toml"
    f.write_text("[sampling\ninterval=")
    result = CliRunner().invoke(main, ["config", "--config", str(f)])
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_example_config_documents_every_key_and_is_valid() -> None:
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "configs", "example.toml")
    with open(path) as f:
        text = f.read()
    assert text == render_example(), "regenerate: resctrl-pipeline config --example"
    for key in KEYS:
        assert key.name.rpartition(".")[2] in text, key.name
    resolve(load(path, environ={}))


#: Characters a hand-made TOML writer got wrong: carriage return, escape, DEL, quotes,
#: backslashes, a line separator, and a lone surrogate (an undecodable byte of a path
#: from the environment or a flag).
AWKWARD = '/x\r\x1b[31m\x7f\t"\'\\\\n\u2028\udcff'


def test_handoff_round_trips_every_accepted_value(tmp_path: Path) -> None:
    overrides = {"output.dir": AWKWARD, "cgroup.root": AWKWARD + "/c",
                 "output.spool_dir": "/s\x01\x02\x1f", "resctrl.root": '/r"] = 1'}  # fmt: skip
    src = load(environ={"NODE_NAME": "n-1"}, overrides=overrides)
    cfg = resolve(src)  # the validators accept all of them
    f = tmp_path / "config.json"
    f.write_bytes(dump_handoff(src))
    back = resolve(load_handoff(f))
    assert back == cfg
    assert back.output_dir == AWKWARD and back.spool_dir == "/s\x01\x02\x1f"


def test_handoff_refuses_unknown_keys_and_non_objects(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text('{"sampling.nope": 1}')
    with pytest.raises(ConfigError, match=r"sampling\.nope"):
        load_handoff(f)
    f.write_text("[1]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_handoff(f)


def test_config_command_quotes_control_characters() -> None:
    result = CliRunner().invoke(main, ["config", "--output", "/o\r\x1b\"x"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("dir = "))
    # Valid TOML that reads back as the same value.
    assert tomllib.loads(line.split("  #")[0])["dir"] == "/o\r\x1b\"x"
