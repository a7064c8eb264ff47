"""Object storage for the writer: finalised files go from a local spool to S3.

* :mod:`.s3` — ``s3://bucket/prefix`` and the store, on ``pyarrow.fs.S3FileSystem``
  (the AWS SDK: default credential chain with refresh, multipart, retries, TLS and
  proxy settings);
* :mod:`.spool` — the finalised files waiting in ``output.spool_dir``, object keys
  (optionally Hive-partitioned);
* :mod:`.uploader` — the background thread: bound, upload, retry with back-off.

The sink knows nothing of this: it writes into the spool as into any output
directory, and its contract (every ``*.parquet`` is complete) is what the uploader
relies on. Operator documentation: ``docs/operations.md``.
"""

from resctrl_pipeline.storage.s3 import (
    MULTIPART_PART_BYTES,
    S3Location,
    S3Settings,
    S3Store,
    UploadError,
    filesystem,
    region_from,
)
from resctrl_pipeline.storage.spool import KeyScheme, Spool, SpooledFile
from resctrl_pipeline.storage.uploader import Backoff, ObjectStore, Uploader, UploadStatistics

__all__ = [
    "MULTIPART_PART_BYTES",
    "Backoff",
    "KeyScheme",
    "ObjectStore",
    "S3Location",
    "S3Settings",
    "S3Store",
    "Spool",
    "SpooledFile",
    "UploadError",
    "UploadStatistics",
    "Uploader",
    "filesystem",
    "region_from",
]
