"""``top``'s view from hand-written /status and /pods documents."""

from __future__ import annotations

from typing import Any

from resctrl_pipeline.top import build_view, health_line, render

MIB = 2**20


def status(ready: bool = True, reasons: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "ready": ready, "reasons": list(reasons), "node": "n1",
        "l3_cache_bytes": {"0": 32 * MIB, "1": 32 * MIB},
        "actors": {
            "sampler": {"running": True, "restarts": 1, "counters": {"dropped_x": 2},
                        "gauges": {"last_sample_seconds": 999.5}},
            "writer": {"running": False, "restarts": 0, "counters": {}, "gauges": {}},
        },
    }  # fmt: skip


def pod(name: str, occ: int, mbm: int | None, rec: int = 1) -> dict[str, Any]:
    return {"namespace": "ns", "pod": name, "pod_uid": f"uid-{name}", "llc_occupancy_bytes": occ,
            "mbm_total_bytes": mbm, "mbm_local_bytes": None if mbm is None else mbm // 2,
            "containers": 2, "reconciled_containers": rec}  # fmt: skip


def test_pods_sorted_by_occupancy_with_shares_rates_and_node_total() -> None:
    before = {"node": "n1", "timestamp": 10 * 10**9,
              "pods": [pod("a", 1 * MIB, 1000), pod("b", 8 * MIB, 5000)]}  # fmt: skip
    pods = [pod("a", 2 * MIB, 3000), pod("b", 16 * MIB, 4000), pod("c", 0, None)]
    now = {"node": "n1", "timestamp": 12 * 10**9, "pods": pods}
    view = build_view(status(), now, before, now=1000.0)
    assert [p["pod"] for p in view["pods"]] == ["b", "a", "c"]
    assert view["l3_cache_bytes"] == 64 * MIB and view["l3_domains"] == 2
    assert view["llc_occupancy_bytes"] == 18 * MIB
    a = view["pods"][1]
    assert a["llc_share"] == 2 / 64
    assert a["mbm_total_bytes_per_second"] == 1000.0  # (3000 - 1000) bytes / 2 s
    assert a["mbm_local_bytes_per_second"] == 500.0
    assert view["pods"][0]["mbm_total_bytes_per_second"] is None  # counter went back: reset
    assert view["pods"][2]["mbm_total_bytes_per_second"] is None  # no MBM
    text = render(view)
    assert text.splitlines()[0] == "node n1 · 3 pods · occupancy 18.0 MiB of 64.0 MiB L3 " \
        "(2 domain(s), 28%)"
    assert "ns/b" in text.splitlines()[4] and "1/2 reconciled" in text


def test_first_reading_has_no_rates_and_unknown_l3_says_so() -> None:
    st = status()
    st["l3_cache_bytes"] = {}
    view = build_view(st, {"node": "n1", "timestamp": 1, "pods": [pod("a", MIB, 10)]})
    assert view["pods"][0]["mbm_total_bytes_per_second"] is None
    assert view["pods"][0]["llc_share"] is None
    assert "(L3 size unknown)" in render(view)


def test_health_line_counts_actors_restarts_drops_and_reasons() -> None:
    line = health_line(status(ready=False, reasons=("actor writer is not running",)), now=1000.0)
    assert line == ("NOT READY · 1/2 actors running · 1 restarts · 2 dropped · last sample "
                    "0.5s ago · actor writer is not running")  # fmt: skip


def test_render_limits_the_pods_to_the_screen() -> None:
    pods = {"node": "n1", "timestamp": 1, "pods": [pod(f"p{i}", i, None) for i in range(10)]}
    text = render(build_view(status(), pods), max_pods=3)
    assert text.splitlines()[-1] == "… 7 more"
    assert "ns/p9" in text and "ns/p0" not in text
