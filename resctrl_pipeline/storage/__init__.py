"""Object storage for the writer: finalised files go from a local spool to S3.

* :mod:`.sigv4` — AWS Signature Version 4 (pure);
* :mod:`.s3` — ``s3://bucket/prefix``, credentials from the environment, one signed
  ``PUT`` per file on the standard library;
* :mod:`.spool` — the finalised files waiting in ``output.spool_dir``, object keys
  (optionally Hive-partitioned);
* :mod:`.uploader` — the background thread: bound, upload, retry with back-off.

The sink knows nothing of this: it writes into the spool as into any output
directory, and its contract (every ``*.parquet`` is complete) is what the uploader
relies on. Operator documentation: ``docs/operations.md``.
"""

from resctrl_pipeline.storage.s3 import (
    S3Location,
    S3Store,
    UploadError,
    credentials_from_environ,
    region_from,
)
from resctrl_pipeline.storage.sigv4 import Credentials
from resctrl_pipeline.storage.spool import KeyScheme, Spool, SpooledFile
from resctrl_pipeline.storage.uploader import Backoff, ObjectStore, Uploader, UploadStatistics

__all__ = [
    "Backoff",
    "Credentials",
    "KeyScheme",
    "ObjectStore",
    "S3Location",
    "S3Store",
    "Spool",
    "SpooledFile",
    "UploadError",
    "UploadStatistics",
    "Uploader",
    "credentials_from_environ",
    "region_from",
]
