"""A burst of pods through CRI while the production listener answers NRI.

:func:`run_burst` starts N pods with one workload container each from a pool of
threads (as a kubelet would when a node fills up), then removes them, and returns the
listener's answer latencies (read → answer written, measured inside the listener
process) together with the CRI-side times.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .daemon import Containerd
from .nri_probe import ListenerProcess, ListenerReport

__all__ = ["BurstResult", "percentile", "run_burst"]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass(frozen=True, slots=True)
class BurstResult:
    """Outcome of one burst.

    Attributes:
        pods: how many pods ran.
        report: the listener's latencies and counters.
        start_seconds: wall time from the first RunPodSandbox to the last
            StartContainer returning.
        pod_seconds: per pod, RunPodSandbox + CreateContainer + StartContainer.
    """

    pods: int
    report: ListenerReport
    start_seconds: float
    pod_seconds: list[float]

    def latency_ms(self) -> tuple[float, float, float, int]:
        """``(p50, p99, max, count)`` of the listener's answer latencies in ms
        (events only: Configure and Synchronize are left out)."""
        values = [
            s * 1000
            for method, s in self.report.latencies
            if method not in ("Configure", "Synchronize")
        ]
        if not values:
            return float("nan"), float("nan"), float("nan"), 0
        return statistics.median(values), percentile(values, 0.99), max(values), len(values)

    def summary(self) -> str:
        """One line for humans."""
        p50, p99, worst, n = self.latency_ms()
        return (
            f"{self.pods} pods: listener answered {n} requests, p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms, max {worst:.2f} ms; pods started in {self.start_seconds:.2f} s "
            f"(per pod p50 {statistics.median(self.pod_seconds) * 1000:.0f} ms)"
        )


def run_burst(daemon: Containerd, pods: int = 50, workers: int = 8) -> BurstResult:
    """Run the burst against ``daemon`` and remove every pod it made.

    Raises:
        TimeoutError: the listener did not register, or sent no report.
        CriError: a CRI call failed.
    """
    with ListenerProcess(str(daemon.paths.nri_socket)) as listener:
        if not listener.wait_connected(15.0):
            raise TimeoutError("the listener did not register with containerd")

        with daemon.client() as cri:

            def one(i: int) -> tuple[str, float]:
                began = time.monotonic()
                pod = cri.run_pod(f"burst-{i}", namespace="e2e-burst")
                cri.run_container(pod, "work", daemon.images.workload, ["--threads", "1"])
                return pod.id, time.monotonic() - began

            began = time.monotonic()
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(one, range(pods)))
            elapsed = time.monotonic() - began
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(cri.remove_pod, [pod_id for pod_id, _ in results]))
        report = listener.stop()
    return BurstResult(pods, report, elapsed, [s for _, s in results])
