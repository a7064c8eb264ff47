"""The writer process: occupancy batches → Parquet files (rotation, durability, upload)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from resctrl_pipeline.actor import run_actor
from resctrl_pipeline.config import Config
from resctrl_pipeline.core import Core
from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.resctrl.cache import l3_sizes
from resctrl_pipeline.sink import ParquetSink
from resctrl_pipeline.storage import (
    KeyScheme,
    S3Location,
    S3Store,
    Spool,
    Uploader,
    credentials_from_environ,
    region_from,
)
from resctrl_pipeline.writer import WriterCore, timer_period

# Files are uploaded with one PUT, which S3 limits to 5 GiB; a file can exceed
# output.max_file_bytes by one flush (at most 32 MiB of rows) plus its footer.
_MAX_S3_FILE_BYTES = 4 * 1024**3


def build(cfg: Config, environ: Mapping[str, str] | None = None) -> Core:
    """The writer core configured from ``output.*``.

    With a local ``output.dir`` the sink writes there. With ``s3://bucket/prefix`` the
    sink writes into ``output.spool_dir`` and an :class:`Uploader` moves each
    finalised file to the bucket.

    Args:
        cfg: the configuration.
        environ: where S3 credentials and ``AWS_DEFAULT_REGION`` are read (default
            ``os.environ``, which the supervisor passes on to its actors).

    Raises:
        ConfigError: an ``output.*`` value is out of range, ``output.partitioning``
            is set for a local directory, S3 credentials are missing, or files could
            outgrow what one S3 upload takes.
    """
    env = os.environ if environ is None else environ
    uploader = None
    directory = cfg.output_dir
    if cfg.output_dir.startswith("s3://"):
        if cfg.max_file_bytes > _MAX_S3_FILE_BYTES:
            raise ConfigError(
                "output.max_file_bytes", cfg.max_file_bytes,
                "at most 4GiB with s3:// output (one upload takes at most 5 GiB, and a file "
                "may exceed the limit by a row group)",
            )  # fmt: skip
        location = S3Location.parse(cfg.output_dir)
        store = S3Store(
            location,
            endpoint=cfg.s3_endpoint,
            region=region_from(cfg.s3_region, env),
            path_style=cfg.s3_path_style,
            credentials=credentials_from_environ(env),
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
    return WriterCore(sink, timer_period(cfg.flush_interval), uploader)


def main(argv: list[str] | None = None) -> int:
    """Console script ``rp-writer``."""
    return run_actor(build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
