"""resctrl-pipeline: per-pod last-level-cache occupancy for Kubernetes nodes.

Four actors, each a separate OS process over ZeroMQ PUSH/PULL (see :mod:`topology`):

* nri-listener: containerd's NRI events → lifecycle and metadata messages;
* reconciler: one resctrl monitoring group per pod, every thread of the pod in it;
* sampler: reads each group's counters on a timer → occupancy batches;
* writer: occupancy batches → Parquet files (rotation, durability);

plus the supervisor (``resctrl-pipeline up``) that spawns, watches and restarts them.
Each actor is a pure core in this package driven by the shared shell in :mod:`actor`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
