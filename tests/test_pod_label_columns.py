"""Pod labels chosen by ``output.pod_labels`` become columns: config, sampler, codec, file."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from resctrl_pipeline import codec
from resctrl_pipeline.config import load, resolve
from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.messages import GroupState, MetadataSnapshot, PodLabels, PodLabelsGone
from resctrl_pipeline.sampling import Sampler
from resctrl_pipeline.sink import ParquetSink
from tests.test_sampling import FakeClock, FakeLlcReader

APP = "app.kubernetes.io/name"


def pod_labels(value: object) -> tuple[str, ...]:
    return resolve(load(environ={}, overrides={"output.pod_labels": value})).pod_labels


def test_config_takes_a_list_or_a_comma_separated_string_of_label_keys() -> None:
    assert pod_labels([APP, "team"]) == (APP, "team")
    assert pod_labels(f"{APP}, team") == (APP, "team")
    assert resolve(load(environ={})).pod_labels == ()
    with pytest.raises(ConfigError, match="not a Kubernetes label key"):
        pod_labels("has space")
    with pytest.raises(ConfigError, match="give the same column label_a_b"):
        pod_labels(["a.b", "a_b"])


def test_labels_travel_through_the_codec() -> None:
    msg = MetadataSnapshot((PodLabels("u1", "ns", "p", {APP: "web", "team": "x"}),))
    assert codec.decode(codec.encode(msg)).body == msg


def sampler() -> Sampler:
    s = Sampler(FakeLlcReader({"/g/pod_u1": 10, "/g/pod_u2": 20}), with_mbm=False,
                wall_ns=FakeClock(), label_keys=(APP, "team"))  # fmt: skip
    for uid in ("u1", "u2"):
        s.handle_resctrl_event(GroupState(uid, f"/g/pod_{uid}", 1, 1))
    return s


def test_sampler_writes_the_chosen_labels_and_null_where_a_pod_lacks_one(tmp_path: Path) -> None:
    s = sampler()
    s.handle_metadata_event(MetadataSnapshot((
        PodLabels("u1", "ns", "a", {APP: "web", "other": "ignored"}),
        PodLabels("u2", "ns", "b", {"team": "blue"}),
    )))  # fmt: skip
    batch = s.handle_sample_timer()
    assert batch is not None
    by_uid = dict(zip(batch.columns["pod_uid"], range(2), strict=True))
    app, team = batch.columns["label_app_kubernetes_io_name"], batch.columns["label_team"]
    assert (app[by_uid["u1"]], team[by_uid["u1"]]) == ("web", None)
    assert (app[by_uid["u2"]], team[by_uid["u2"]]) == (None, "blue")
    assert "label_other" not in batch.columns
    sink = ParquetSink(str(tmp_path), node="n1")
    sink.add(batch, 0.0)
    sink.close(1.0)
    [path] = tmp_path.glob("*.parquet")
    table = pq.read_table(path)
    assert table.schema.names[-2:] == ["label_app_kubernetes_io_name", "label_team"]
    assert str(table.schema.field("label_team").type) == "string"
    assert sorted(zip(table.column("pod_uid").to_pylist(),
                      table.column("label_team").to_pylist(), strict=True)) == [
        ("u1", None), ("u2", "blue")]  # fmt: skip


def test_a_label_delta_updates_and_a_gone_pod_forgets_its_labels() -> None:
    s = sampler()
    s.handle_metadata_event(PodLabels("u1", "ns", "a", {APP: "v1"}))
    s.handle_metadata_event(PodLabels("u1", "ns", "a", {APP: "v2"}))
    batch = s.handle_sample_timer()
    assert batch is not None
    u1 = batch.columns["pod_uid"].index("u1")
    assert batch.columns["label_app_kubernetes_io_name"][u1] == "v2"
    s.handle_metadata_event(PodLabelsGone("u1"))
    assert "u1" not in s.label_values
