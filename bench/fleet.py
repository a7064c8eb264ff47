"""A generated fleet dataset: Hive-partitioned Parquet files as the agents upload them.

Used by ``tests/test_report.py`` and by the report benchmark (``python -m
bench.fleet``). Each node has ``pods`` pods sampled every ``interval`` seconds; one
file per node and hour under ``node=<node>/date=<day>/``; pod ``i`` on node ``n``
holds ``(i + 1) MiB + n KiB`` of cache (so the ranking is known in advance) and its
MBM counter grows by ``(i + 1) MB/s``. The files carry ``l3_cache_bytes`` metadata.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from resctrl_pipeline import schema

__all__ = ["DAY0_NS", "L3_BYTES", "generate", "occupancy_of"]

DAY0_NS = 1_764_547_200 * 10**9  # 2025-12-01T00:00:00Z
L3_BYTES = 32 * 2**20


def occupancy_of(node: int, pod: int) -> int:
    """The constant occupancy of pod ``pod`` on node ``node``."""
    return (pod + 1) * 2**20 + node * 1024


def generate(
    write: Callable[[str, pa.Table], None],
    *,
    nodes: int,
    pods: int,
    hours: int,
    interval: float = 1.0,
    namespaces: int = 3,
) -> int:
    """Call ``write(relative_path, table)`` for every file; returns the row count."""
    cols = schema.column_names(["mbm_total_bytes", "mbm_local_bytes", "mbm_state", "node"])
    arrow = schema.arrow_schema(
        ["mbm_total_bytes", "mbm_local_bytes", "mbm_state", "node"],
        metadata={"l3_cache_bytes": json.dumps({"0": L3_BYTES // 2, "1": L3_BYTES // 2})},
    )
    step = int(interval * 1e9)
    ticks_per_hour = int(3600 / interval)
    total = 0
    for n in range(nodes):
        node = f"node-{n:02d}"
        for h in range(hours):
            t0 = DAY0_NS + h * 3600 * 10**9
            ticks = pa.array(range(t0, t0 + ticks_per_hour * step, step), pa.int64())
            parts = []
            for p in range(pods):
                k = len(ticks)
                ts = pc.add(ticks, 1000 * (p + 1))
                mbm = pc.round(pc.multiply(pc.subtract(ticks, DAY0_NS), (p + 1) * 1e6 / 1e9))
                parts.append(pa.table({
                    "start_timestamp": ticks, "timestamp": ts,
                    "pod_namespace": pa.array([f"ns-{p % namespaces}"] * k),
                    "pod_name": pa.array([f"pod-{p:03d}"] * k),
                    "pod_uid": pa.array([f"{n:04d}{p:04d}-uid"] * k),
                    "resctrl_group": pa.array([f"/sys/fs/resctrl/mon_groups/pod_{p}"] * k),
                    "total_containers": pa.array([2] * k, pa.int64()),
                    "reconciled_containers": pa.array([2] * k, pa.int64()),
                    "llc_occupancy_bytes": pa.array([occupancy_of(n, p)] * k, pa.int64()),
                    "mbm_total_bytes": pc.cast(mbm, pa.int64()),
                    "mbm_local_bytes": pc.cast(mbm, pa.int64()),
                    "mbm_state": pa.array(["assigned"] * k),
                    "node": pa.array([node] * k),
                }).select(cols))  # fmt: skip
            table = pa.concat_tables(parts).sort_by("start_timestamp").cast(arrow)
            day = time.strftime("%Y-%m-%d", time.gmtime(t0 / 1e9))
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t0 / 1e9))
            write(f"node={node}/date={day}/resctrl-occupancy-{node}-{stamp}-0000{h:04d}.parquet",
                  table)  # fmt: skip
            total += table.num_rows
    return total


def writer_to(fs: pafs.FileSystem, base: str) -> Callable[[str, pa.Table], None]:
    """A ``write`` for :func:`generate` that puts files below ``base`` on ``fs``."""

    def write(rel: str, table: pa.Table) -> None:
        path = f"{base}/{rel}"
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(table, path, filesystem=fs, compression="zstd", row_group_size=1 << 17)

    return write


def _time_reports(target: list[str]) -> None:
    import subprocess

    cli = os.path.join(os.path.dirname(sys.executable), "resctrl-pipeline")
    node_half = ["--node", "node-03", "--since", "2025-12-01T12:00:00Z"]
    for extra in ([], ["--by", "namespace"], node_half):
        load = os.getloadavg()[0]
        started = time.monotonic()
        subprocess.run([cli, "report", *target, "--top", "3", *extra], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        print(f"report {' '.join(extra) or '(default)'}: {time.monotonic() - started:.1f}s "
              f"(load {load:.2f} → {os.getloadavg()[0]:.2f})", flush=True)  # fmt: skip


def main(argv: list[str]) -> int:
    """``python -m bench.fleet DIR [NODES PODS HOURS] [--moto]``: generate the dataset
    (unless DIR exists), then time ``report`` over it; with ``--moto`` also upload it
    to a ``moto_server`` on loopback and time ``report s3://…`` against that."""
    import subprocess
    import urllib.request

    moto = "--moto" in argv
    argv = [a for a in argv if a != "--moto"]
    out = os.path.abspath(argv[0])
    nodes, pods, hours = (int(a) for a in (argv[1:4] if len(argv) >= 4 else (10, 20, 24)))
    if not os.path.isdir(out):
        started = time.monotonic()
        rows = generate(writer_to(pafs.LocalFileSystem(), out), nodes=nodes, pods=pods,
                        hours=hours)  # fmt: skip
        print(f"generated {rows:,} rows in {out} ({time.monotonic() - started:.0f}s)", flush=True)
    print("local:", flush=True)
    _time_reports([out])
    if not moto:
        return 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = os.path.join(os.path.dirname(sys.executable), "moto_server")
    server = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/fleet", method="PUT"))
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        s3 = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http",
                               region="us-east-1")  # fmt: skip
        pafs.copy_files(out, "fleet/occ", destination_filesystem=s3)
        print(f"moto ({endpoint}):", flush=True)
        _time_reports(["s3://fleet/occ", "--s3-endpoint", endpoint])
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
