"""Per-pod series on /metrics and the /pods document, from the sampler's summaries."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from resctrl_pipeline import codec
from resctrl_pipeline.messages import PodSummary
from resctrl_pipeline.supervise.health import ActorView, PipelineView
from resctrl_pipeline.supervise.http import HttpEndpoints

TWO_PODS = {
    "pod_namespace": ["shop", None], "pod_name": ["web-0", None], "pod_uid": ["u1", "u2"],
    "total_containers": [2, 1], "reconciled_containers": [1, 1],
    "llc_occupancy_bytes": [4_194_304, 65_536], "mbm_total_bytes": [9_000, 10],
    "mbm_local_bytes": [8_000, 5],
}  # fmt: skip


def _view(pods: PodSummary | None) -> PipelineView:
    """A view with a running sampler whose latest summary is ``pods``."""
    sampler = ActorView("sampler", pid=10, running=True)
    return PipelineView(actors={"sampler": sampler}, node="node-a", pods=pods)


def _over_the_wire(summary: PodSummary) -> PodSummary:
    body = codec.decode(codec.encode(summary, src="sampler")).body
    assert isinstance(body, PodSummary)
    return body


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


class Served:
    def __init__(self, view: PipelineView) -> None:
        self.view = view
        self.http = HttpEndpoints("127.0.0.1:0", lambda: self.view)

    def __enter__(self) -> Served:
        self.http.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.http.stop()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        code, text = _get(self.http.port, "/metrics")
        assert code == 200
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name.startswith("resctrl_pod")
        }


def _labels(ns: str, pod: str, uid: str) -> tuple[tuple[str, str], ...]:
    return (("namespace", ns), ("node", "node-a"), ("pod", pod), ("pod_uid", uid))


def test_per_pod_series_with_labels_and_mbm_counters() -> None:
    view = _view(_over_the_wire(PodSummary(1_700_000_000, TWO_PODS)))
    with Served(view) as served:
        got = served.samples()
    web = _labels("shop", "web-0", "u1")
    assert got[("resctrl_pod_llc_occupancy_bytes", web)] == 4_194_304
    assert got[("resctrl_pod_mbm_total_bytes_total", web)] == 9_000
    assert got[("resctrl_pod_mbm_local_bytes_total", web)] == 8_000
    assert got[("resctrl_pod_containers", web)] == 2
    assert got[("resctrl_pod_reconciled_containers", web)] == 1
    # A pod whose labels have not arrived yet still has its series, with empty names.
    assert got[("resctrl_pod_llc_occupancy_bytes", _labels("", "", "u2"))] == 65_536
    assert len(got) == 10


def test_without_mbm_there_are_no_mbm_series() -> None:
    cols = {k: v for k, v in TWO_PODS.items() if not k.startswith("mbm")}
    with Served(_view(PodSummary(1, cols))) as served:
        names = {name for name, _ in served.samples()}
    assert names == {"resctrl_pod_llc_occupancy_bytes", "resctrl_pod_containers",
                     "resctrl_pod_reconciled_containers"}  # fmt: skip


def test_a_removed_pod_is_gone_at_the_next_scrape() -> None:
    view = _view(PodSummary(1, TWO_PODS))
    with Served(view) as served:
        assert ("resctrl_pod_containers", _labels("", "", "u2")) in served.samples()
        view.pods = PodSummary(2, {k: v[:1] for k, v in TWO_PODS.items()})
        got = served.samples()
        assert ("resctrl_pod_containers", _labels("", "", "u2")) not in got
        assert ("resctrl_pod_containers", _labels("shop", "web-0", "u1")) in got
        view.pods = PodSummary(3, {})
        assert served.samples() == {}


def test_a_stopped_samplers_last_numbers_are_not_served() -> None:
    view = _view(PodSummary(1, TWO_PODS))
    with Served(view) as served:
        assert len(served.samples()) == 10
        view.actors["sampler"].running = False  # crashed; its restart has not reported yet
        assert served.samples() == {}
        assert json.loads(_get(served.http.port, "/pods")[1])["pods"] == []


def test_entries_of_the_wrong_type_are_left_out_and_counted() -> None:
    cols = {k: list(v) for k, v in TWO_PODS.items()}
    cols["llc_occupancy_bytes"][1] = "lots"
    cols["pod_uid"].append("u3")  # ragged: the codec refuses that, the renderer skips it
    with Served(_view(PodSummary(1, cols))) as served:
        got = served.samples()
        _, text = _get(served.http.port, "/metrics")
    assert {dict(labels)["pod_uid"] for _, labels in got} == {"u1"}
    assert "resctrl_pipeline_pod_entries_rejected 1.0" in text


def test_pods_document() -> None:
    view = _view(_over_the_wire(PodSummary(1_700_000_000, TWO_PODS)))
    with Served(view) as served:
        code, body = _get(served.http.port, "/pods")
        assert code == 200
        assert json.loads(body) == {
            "node": "node-a",
            "timestamp": 1_700_000_000,
            "pods": [
                {"namespace": "shop", "pod": "web-0", "pod_uid": "u1",
                 "llc_occupancy_bytes": 4_194_304, "mbm_total_bytes": 9_000,
                 "mbm_local_bytes": 8_000, "containers": 2, "reconciled_containers": 1},
                {"namespace": "", "pod": "", "pod_uid": "u2", "llc_occupancy_bytes": 65_536,
                 "mbm_total_bytes": 10, "mbm_local_bytes": 5, "containers": 1,
                 "reconciled_containers": 1},
            ],
        }  # fmt: skip
        view.pods = PodSummary(5, {k: v for k, v in TWO_PODS.items() if "mbm" not in k})
        pods = json.loads(_get(served.http.port, "/pods")[1])["pods"]
        assert [(p["mbm_total_bytes"], p["mbm_local_bytes"]) for p in pods] == [(None, None)] * 2
        view.pods = None
        assert json.loads(_get(served.http.port, "/pods")[1]) == {
            "node": "node-a", "timestamp": 0, "pods": []}  # fmt: skip
        view.pod_metrics = False
        code, body = _get(served.http.port, "/pods")
        assert code == 404 and "http.pod_metrics" in body
