"""``resctrl-pipeline report``: the fleet-wide noisy-neighbour ranking over the
Parquet output, local or on S3, and its plot.

* :mod:`.source` — the files (local, or ``s3://`` through pyarrow's S3 filesystem) as
  one ``pyarrow.dataset`` with Hive partitions, filters pushed down, progress, and
  the durable rows of files still in progress;
* :mod:`.ranking` — mean, p95 and max occupancy and MBM rate per pod, namespace or
  node (pure);
* :mod:`.render` — table, CSV, JSON (pure);
* :mod:`.plot` — occupancy and MBM rate over time (matplotlib, an optional extra).

User documentation: ``docs/analysis.md``.
"""

from resctrl_pipeline.report.ranking import BY, Ranked, rank
from resctrl_pipeline.report.render import FORMATS, render
from resctrl_pipeline.report.source import (
    Filters,
    ReportError,
    Scan,
    in_progress_rows,
    open_source,
    progress_printer,
    scan,
)

__all__ = [
    "BY",
    "FORMATS",
    "Filters",
    "Ranked",
    "ReportError",
    "Scan",
    "in_progress_rows",
    "open_source",
    "progress_printer",
    "rank",
    "render",
    "scan",
]
