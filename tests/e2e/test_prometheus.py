"""A real Prometheus scraping a running ``up`` on the emulated node, queried with PromQL.

One pipeline and one Prometheus (scraping every second) serve the whole module: the
node has two busy pods and an idle one, started after Prometheus began scraping so
that their NRI answers fall inside its rate windows.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from tests.e2e.prometheus_server import PrometheusServer
from tests.prerequisites import missing, requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse", "prometheus")]

if not missing("fuse"):
    from resctrl_pipeline.emulator.node import EmulatedNode, Pod

NODE = "prom-node"
FAST = ["--sampling-interval", "200ms", "--retry-interval", "1s", "--node-name", NODE]


@dataclass
class Stack:
    node: EmulatedNode
    prometheus: PrometheusServer
    busy: list[Pod]
    idle: Pod
    log: str

    def up_log(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()[-4000:]

    def values(self, expr: str) -> dict[str, float]:
        """Instant query → {pod label ("" without one): value}."""
        return {
            r["metric"].get("pod", ""): float(r["value"][1])
            for r in self.prometheus.query(expr)
        }


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    work = tempfile.mkdtemp(prefix="rp-prom-", dir="/tmp")
    node = EmulatedNode(os.path.join(work, "node"))
    os.makedirs(node.work, exist_ok=True)
    prometheus: PrometheusServer | None = None
    log = os.path.join(work, "up.log")
    try:
        node.start()
        node.start_pipeline(os.path.join(work, "out"), *FAST, log_path=log)
        port = poll_until(lambda: node.pids().get("http_port"), 30, what="up serving HTTP")
        prometheus = PrometheusServer(os.path.join(work, "prometheus"), f"127.0.0.1:{port}")
        prometheus.wait_ready()
        stack = Stack(node, prometheus, [], None, log)  # type: ignore[arg-type]
        poll_until(lambda: prometheus.query('up{job="resctrl-pipeline"} == 1'), 60,
                   interval=0.5, what="Prometheus scraping up")  # fmt: skip
        for name in ("busy-a", "busy-b"):
            pod = node.new_pod("busy", name, namespace="shop")
            node.start_pod(pod)
            stack.busy.append(pod)
        stack.idle = node.new_pod("idle", "idle-c", namespace="shop")
        node.start_pod(stack.idle)
        poll_until(lambda: len(stack.values("resctrl_pod_llc_occupancy_bytes")) == 3, 90,
                   interval=0.5, what="three pods in Prometheus")  # fmt: skip
        yield stack
    finally:
        if prometheus is not None:
            prometheus.stop()
        node.close()
        shutil.rmtree(work, ignore_errors=True)


def test_prometheus_scrapes_every_family_and_promtool_agrees(stack: Stack) -> None:
    code, text = stack.node.http("/metrics")
    assert code == 200
    done = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"],
                          input=text.encode(), capture_output=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # Prometheus asks for OpenMetrics first: the live families parse in that form too
    # (strictly: unique family names, counters and histograms well formed, # EOF).
    port = stack.node.pids()["http_port"]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                 headers={"Accept": "application/openmetrics-text"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        om = {f.name: f.type for f in openmetrics_families(r.read().decode())}
    assert om["resctrl_pipeline_nri_answer_seconds"] == "histogram"
    assert om["resctrl_pod_mbm_total_bytes"] == "counter"
    result = stack.prometheus.query('count by (__name__) ({job="resctrl-pipeline"})')
    names = {r["metric"]["__name__"] for r in result}
    for expected in ("resctrl_pipeline_nri_answer_seconds_bucket", "resctrl_pod_containers",
                     "resctrl_pipeline_dropped_messages_total",
                     "resctrl_pipeline_nri_requests_total", "resctrl_pod_mbm_total_bytes_total"):
        assert expected in names, sorted(names)


def test_histogram_quantile_over_the_nri_histogram_gives_a_number(stack: Stack) -> None:
    expr = ("histogram_quantile(0.99, sum by (le) "
            "(rate(resctrl_pipeline_nri_answer_seconds_bucket[5m])))")  # fmt: skip
    (value,) = stack.values(expr).values()
    assert math.isfinite(value) and 0 < value <= 2.0, value  # 2 s: the largest finite bucket


def test_topk_names_the_busy_pods_ahead_of_the_idle_one(stack: Stack) -> None:
    def ranking() -> list[str] | None:
        result = stack.prometheus.query("topk(3, resctrl_pod_llc_occupancy_bytes)")
        ranked = sorted(result, key=lambda r: -float(r["value"][1]))
        names = [r["metric"]["pod"] for r in ranked]
        busy = {p.name for p in stack.busy}
        return names if set(names[:2]) == busy and names[2] == stack.idle.name else None

    ranking_seen = poll_until(ranking, 60, interval=0.5, what="busy pods ranked first")
    assert ranking_seen[2] == "idle-c"
    labels = stack.prometheus.query('resctrl_pod_llc_occupancy_bytes{pod="busy-a"}')[0]["metric"]
    assert labels["namespace"] == "shop" and labels["node"] == NODE
    assert labels["pod_uid"] == stack.busy[0].uid


def test_a_removed_pods_series_go_stale(stack: Stack) -> None:
    gone = stack.node.new_pod("idle", "gone-d", namespace="shop")
    stack.node.start_pod(gone)
    selector = '{pod="gone-d"}'
    poll_until(lambda: stack.values(f"resctrl_pod_containers{selector}"), 60, interval=0.5,
               what="the new pod in Prometheus")  # fmt: skip
    stack.node.stop_pod(gone)
    def stale() -> bool:
        return not any(stack.values(family + selector) for family in (
            "resctrl_pod_llc_occupancy_bytes", "resctrl_pod_containers",
            "resctrl_pod_mbm_total_bytes_total"))  # fmt: skip

    poll_until(stale, 30, interval=0.5, what="the removed pod's series to go stale")
    assert set(stack.values("resctrl_pod_containers")) == {"busy-a", "busy-b", "idle-c"}


DASHBOARD = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "grafana",
                         "resctrl-pipeline.json")  # fmt: skip
#: What Grafana would put in for the dashboard's variables (all nodes, top 10).
VARIABLES = {"$__rate_interval": "1m", "$node": ".*", "$top": "10"}


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, rows included."""
    with open(DASHBOARD) as f:
        doc = json.load(f)
    out = []
    stack = list(doc["panels"])
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    # The node variable's label_values(metric, label) is Grafana's, not PromQL.
    (node_var,) = [v for v in doc["templating"]["list"] if v["name"] == "node"]
    found = re.fullmatch(r"label_values\((\w+), (\w+)\)", node_var["definition"])
    assert found is not None, node_var["definition"]
    metric, label = found.groups()
    out.append(("variable node", f"count by ({label}) ({metric})"))
    return out


def test_every_dashboard_expression_returns_data(stack: Stack) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 12
    # NRI answers and a fast-path placement inside the rate window of the latency panel.
    churn = stack.node.new_pod("idle", "churn-e", namespace="shop")
    stack.node.start_pod(churn)
    stack.node.stop_pod(churn)
    poll_until(lambda: stack.values("increase(resctrl_pipeline_fastpath_seconds_count[1m]) > 0"),
               60, interval=0.5, what="a fast-path placement in Prometheus")  # fmt: skip
    promql = {}
    for title, expr in queries:
        text = expr
        for name, value in VARIABLES.items():
            text = text.replace(name, value)
        assert "$" not in text, f"{title}: unknown variable in {expr}"
        promql[title, expr] = text

    def without_data() -> list[str]:
        out = []
        for (title, _), text in promql.items():
            result = stack.prometheus.query(text)
            if not any(math.isfinite(float(r["value"][1])) for r in result):
                out.append(f"{title}: {text} -> {result}")
        return out

    # A rate needs two scrapes of a series: poll until every panel has its data.
    try:
        poll_until(lambda: not without_data(), 60, interval=1.0, what="data for every panel")
    except AssertionError:
        pytest.fail("\n".join(["panels without data:", *without_data()]))
    assert stack.values(f'resctrl_pod_llc_occupancy_bytes{{node="{NODE}"}}')


def test_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable() -> None:
    with open(DASHBOARD) as f:
        doc = json.load(f)
    assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 36
    ids = []
    stack = list(doc["panels"])
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        ids.append(panel["id"])
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert len(ids) == len(set(ids))
    (ds,) = [v for v in doc["templating"]["list"] if v["name"] == "datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
