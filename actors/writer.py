"""The writer process: occupancy batches → Parquet files (rotation, durability)."""

from __future__ import annotations

from resctrl_pipeline.actor import run_actor
from resctrl_pipeline.config import Config
from resctrl_pipeline.core import Core
from resctrl_pipeline.errors import ConfigError
from resctrl_pipeline.sink import ParquetSink
from resctrl_pipeline.sink.writer import WriterCore, timer_period


def build(cfg: Config) -> Core:
    """The writer core over a local-directory sink configured from ``output.*``.

    Raises:
        ConfigError: ``output.dir`` is an ``s3://`` URL (not supported yet) or an
            ``output.*`` value is out of range.
    """
    if cfg.output_dir.startswith("s3://"):
        raise ConfigError("output.dir", cfg.output_dir, "s3:// output is not supported yet")
    sink = ParquetSink(
        cfg.output_dir,
        cfg.output_prefix,
        cfg.node_name,
        compression=cfg.compression,
        flush_interval=cfg.flush_interval,
        max_file_bytes=cfg.max_file_bytes,
        rotate_interval=cfg.rotate_interval,
    )
    return WriterCore(sink, timer_period(cfg.flush_interval))


def main(argv: list[str] | None = None) -> int:
    """Console script ``rp-writer``."""
    return run_actor(build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
