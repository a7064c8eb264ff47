"""The writer process: occupancy batches → Parquet files (rotation, durability, upload)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

if __name__ == "__main__":
    # Run as the writer process (``python -m actors.writer``): refuse numpy before
    # pyarrow is imported. pyarrow loads numpy whenever it is installed (the dev and
    # plot extras install it), and pandas with it on the first table built: ~55 MiB of
    # RSS for a process that builds every array from Python lists. A production image
    # has neither; this keeps a dev install's writer the same size.
    sys.modules["numpy"] = None  # type: ignore[assignment]
    # pyarrow's default allocator (mimalloc in the wheels) keeps and re-purges pages
    # around every flush of a process that is idle between them: measured at 500 pods
    # (scripts/bench.py steady), the C library's malloc cost the writer half the CPU
    # (0.54 -> 0.26 % of a core) and 15 MiB less RSS (82 -> 67 MiB). A value set by
    # the operator (ARROW_DEFAULT_MEMORY_POOL=mimalloc|jemalloc) is kept.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from resctrl_pipeline.actor import run_actor
from resctrl_pipeline.config import Config
from resctrl_pipeline.core import Core
from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.resctrl.cache import l3_sizes
from resctrl_pipeline.sink import ParquetSink
from resctrl_pipeline.storage import (
    MULTIPART_PART_BYTES,
    KeyScheme,
    S3Location,
    S3Settings,
    S3Store,
    Spool,
    Uploader,
    region_from,
)
from resctrl_pipeline.writer import WriterCore

# Large files go up in parts of MULTIPART_PART_BYTES, and S3 takes at most 10,000
# parts per object; a file can exceed output.max_file_bytes by one flush (at most
# 32 MiB of rows) plus its footer, hence the margin.
_MAX_S3_FILE_BYTES = 9_000 * MULTIPART_PART_BYTES


def build(cfg: Config, environ: Mapping[str, str] | None = None) -> Core:
    """The writer core configured from ``output.*``.

    With a local ``output.dir`` the sink writes there. With ``s3://bucket/prefix`` the
    sink writes into ``output.spool_dir`` and an :class:`Uploader` moves each
    finalised file to the bucket.

    Args:
        cfg: the configuration.
        environ: where ``AWS_DEFAULT_REGION`` is read (default ``os.environ``, which
            the supervisor passes on to its actors). Credentials are found by the AWS
            SDK in the process environment and the usual files, see
            :func:`resctrl_pipeline.storage.filesystem`.

    Raises:
        ConfigError: an ``output.*`` value is out of range, ``output.partitioning``
            is set for a local directory, an ``output.s3_*`` value is unusable, or files
            could outgrow what one S3 object takes.
    """
    env = os.environ if environ is None else environ
    uploader = None
    directory = cfg.output_dir
    if cfg.output_dir.startswith("s3://"):
        if cfg.max_file_bytes > _MAX_S3_FILE_BYTES:
            raise ConfigError(
                "output.max_file_bytes", cfg.max_file_bytes,
                f"at most {_MAX_S3_FILE_BYTES >> 30}GiB with s3:// output (S3 takes at most "
                "10,000 parts of 10MiB per object, and a file may exceed the limit by a "
                "row group)",
            )  # fmt: skip
        location = S3Location.parse(cfg.output_dir)
        store = S3Store(
            location,
            S3Settings(
                endpoint=cfg.s3_endpoint,
                region=region_from(cfg.s3_region, env),
                path_style=cfg.s3_path_style,
                ca_bundle=cfg.s3_ca_bundle,
                proxy=cfg.s3_proxy,
                max_attempts=cfg.s3_max_attempts,
            ),
        )
        uploader = Uploader(
            Spool(cfg.spool_dir, cfg.output_prefix, cfg.node_name),
            store,
            KeyScheme(location.prefix, cfg.partitioning, cfg.node_name),
            max_spool_bytes=cfg.spool_max_bytes,
        )
        directory = cfg.spool_dir
    elif cfg.partitioning != "none":
        raise ConfigError("output.partitioning", cfg.partitioning, "applies to s3:// output only")
    sink = ParquetSink(
        directory,
        cfg.output_prefix,
        cfg.node_name,
        compression=cfg.compression,
        flush_interval=cfg.flush_interval,
        max_file_bytes=cfg.max_file_bytes,
        rotate_interval=cfg.rotate_interval,
        l3_cache_bytes=l3_sizes(cfg.resctrl_root),
    )
    return WriterCore(sink, uploader)


def main(argv: list[str] | None = None) -> int:
    """Console script ``rp-writer``."""
    return run_actor(build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
