"""What analysis needs in every file: the ``node`` column, the L3 size per domain."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from tests.integration.pipeline import RunningPipeline
from tests.integration.test_supervisor import feed_sampler
from tests.support import make_group, make_resctrl_tree, poll_until

pytestmark = pytest.mark.slow


def test_rows_carry_the_node_and_files_the_l3_size_of_each_domain(short_tmp: str) -> None:
    resctrl = os.path.join(short_tmp, "resctrl")
    make_resctrl_tree(resctrl)
    with open(os.path.join(resctrl, "size"), "w") as f:  # what the kernel shows with CAT
        f.write("L3:0=1048576;1=2097152\nMB:0=100;1=100\n")
    make_group(os.path.join(resctrl, "mon_groups", "pod_u1"), value=1000)
    out = os.path.join(short_tmp, "out")
    p = RunningPipeline(os.path.join(short_tmp, "run"),
                        ["--actors", "sampler,writer", "--resctrl-root", resctrl, "--output", out,
                         "--sampling-interval", "100ms", "--node-name", "worker-3",
                         "--nri-socket", os.path.join(short_tmp, "nri.sock")],
                        os.path.join(short_tmp, "up.log"))  # fmt: skip
    try:
        p.wait_serving(("sampler", "writer"))

        def rows() -> float:
            feed_sampler(p.runtime_dir, resctrl)
            return float(p.status()["actors"]["writer"]["counters"].get("rows_received", 0))

        poll_until(rows, 20, interval=0.2, what="rows at the writer")
        assert p.status()["l3_cache_bytes"] == {"0": 1048576, "1": 2097152}
        assert p.terminate() == 0, p.log()
    finally:
        p.kill()
    [name] = os.listdir(out)
    table = pq.read_table(os.path.join(out, name))
    assert set(table.column("node").to_pylist()) == {"worker-3"}
    meta = pq.read_metadata(os.path.join(out, name)).metadata
    assert json.loads(meta[b"l3_cache_bytes"]) == {"0": 1048576, "1": 2097152}
