"""The ``resctrl-pipeline`` command line. Subcommands parse, then call the library.

Exit codes: 0 clean stop, 2 bad configuration or usage, 1 anything else.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any

import click

from resctrl_pipeline import __version__
from resctrl_pipeline.config import (
    KEYS,
    Config,
    Sources,
    load,
    render_example,
    render_markdown,
    render_toml,
    resolve,
)
from resctrl_pipeline.errors import ConfigError

__all__ = ["main"]

_FLAG_OPTIONS = [k for k in KEYS if k.flag]


def _config_options(fn: Any) -> Any:
    """Add ``--config`` and one option per configuration key that has a flag."""
    for key in reversed(_FLAG_OPTIONS):
        assert key.flag is not None
        dest = key.name.replace(".", "__")
        fn = click.option(key.flag, dest, default=None, metavar="VALUE",
                          help=f"{key.help} [{key.name}]")(fn)  # fmt: skip
    return click.option("--config", "config_file", type=click.Path(dir_okay=False),
                        help="TOML configuration file.")(fn)  # fmt: skip


def _load(config_file: str | None, flags: dict[str, Any]) -> tuple[Sources, Config]:
    overrides = {name.replace("__", "."): v for name, v in flags.items() if v is not None}
    try:
        sources = load(config_file, overrides=overrides)
        return sources, resolve(sources)
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="resctrl-pipeline")
def main() -> None:
    """Per-pod last-level-cache occupancy from resctrl, written to Parquet."""


@main.command()
@_config_options
@click.option(
    "--actors",
    "only",
    metavar="LIST",
    help="Run only these actors (comma-separated; for development and benchmarks).",
)
def up(config_file: str | None, only: str | None, **flags: Any) -> None:
    """Run the pipeline in the foreground until SIGTERM/SIGINT."""
    from resctrl_pipeline.errors import PipelineError
    from resctrl_pipeline.supervise import prestart
    from resctrl_pipeline.supervise.spawner import available_actors
    from resctrl_pipeline.supervise.supervisor import Supervisor
    from resctrl_pipeline.topology import ACTORS

    sources, cfg = _load(config_file, flags)
    actors = None
    if only:
        actors = tuple(a.strip() for a in only.split(",") if a.strip())
        unknown = [a for a in actors if a not in ACTORS]
        if unknown:
            click.echo(f"error: unknown actor(s) {', '.join(unknown)}; "
                       f"known: {', '.join(ACTORS)}", err=True)  # fmt: skip
            sys.exit(2)
    try:
        prestart.check(cfg, actors if actors is not None else available_actors(ACTORS))
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    _setup_logging(cfg.log_level)
    try:
        code = Supervisor(cfg, sources, actors=actors).run()
    except (PipelineError, OSError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    sys.exit(code)


@main.command("config")
@_config_options
@click.option("--example", is_flag=True, help="Print a commented file with every key.")
@click.option("--markdown", is_flag=True, help="Print the reference table of every key.")
def config_cmd(config_file: str | None, example: bool, markdown: bool, **flags: Any) -> None:
    """Print the effective configuration and where each value came from."""
    if example:
        click.echo(render_example(), nl=False)
        return
    if markdown:
        click.echo(render_markdown(), nl=False)
        return
    sources, cfg = _load(config_file, flags)
    if sources.values["node.name"] == "":
        # Show the name that will be used, not the empty "use the hostname" default.
        sources = Sources({**sources.values, "node.name": cfg.node_name},
                          {**sources.origin, "node.name": "default: the hostname"})  # fmt: skip
    click.echo(render_toml(sources), nl=False)


def _locate(sources: Sources, cfg: Config) -> Any:
    """The running pipeline the user means (runtime dir, or --http-addr); exit 1 if none."""
    from resctrl_pipeline.instance import InstanceError, locate

    try:
        return locate(cfg.runtime_dir, cfg.http_addr, sources.origin["pipeline.runtime_dir"],
                      sources.origin["http.addr"])  # fmt: skip
    except InstanceError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)


@main.command()
@_config_options
def rotate(config_file: str | None, **flags: Any) -> None:
    """Ask the running writer to finalise its file and start a new one (SIGUSR1).

    The writer is found through the runtime directory (or --http-addr) and signalled
    only if its pid still names the process that was recorded there.
    """
    from resctrl_pipeline.instance import InstanceError, process_start_ticks, verify_process

    sources, cfg = _load(config_file, flags)
    inst = _locate(sources, cfg)
    writer = inst.processes.get("writer")
    if writer is None:
        click.echo(f"error: {inst.where}: the pipeline has no writer running", err=True)
        sys.exit(1)
    if inst.by_http and process_start_ticks(writer.pid) is None:
        click.echo(f"error: the writer of {inst.where} (pid {writer.pid}) is not a process "
                   "here (another machine or container?): run rotate where the pipeline "
                   "runs, e.g. with kubectl exec", err=True)  # fmt: skip
        sys.exit(1)
    try:
        if "supervisor" in inst.processes and process_start_ticks(writer.pid) is None:
            # The supervisor runs (checked by _locate) but the writer is gone: restarting.
            raise ProcessLookupError
        verify_process(writer, inst.where)
        os.kill(writer.pid, signal.SIGUSR1)
    except InstanceError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except ProcessLookupError:
        click.echo(f"error: the writer (pid {writer.pid}) has exited and is being restarted; "
                   "try again in a moment", err=True)  # fmt: skip
        sys.exit(1)
    except PermissionError:
        click.echo(f"error: not allowed to signal the writer (pid {writer.pid}): run as the "
                   "pipeline's user, e.g. with sudo", err=True)  # fmt: skip
        sys.exit(1)
    click.echo(f"rotation requested (SIGUSR1 to the writer, pid {writer.pid})")


@main.command()
@_config_options
@click.option("--json", "as_json", is_flag=True, help="Print the raw /status document.")
def status(config_file: str | None, as_json: bool, **flags: Any) -> None:
    """Actors, pids, uptime, restarts, drops and last sample, as a table.

    The pipeline is found through the runtime directory (or --http-addr).
    """
    from resctrl_pipeline.instance import InstanceError, fetch_json
    from resctrl_pipeline.status_table import format_status

    sources, cfg = _load(config_file, flags)
    inst = _locate(sources, cfg)
    try:
        doc = fetch_json(f"{inst.http_url}/status")
    except InstanceError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    click.echo(json.dumps(doc, indent=2) if as_json else format_status(doc))


@main.command()
@_config_options
@click.option("--once", is_flag=True, help="Print one view and exit (for scripts).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format (json: the view as one document).")
@click.option("--interval", default="2s", show_default=True, help="Refresh interval.")
def top(config_file: str | None, once: bool, fmt: str, interval: str, **flags: Any) -> None:
    """Live view of a running pipeline: pods by L3 occupancy, MBM rates, health.

    The pipeline is found through the runtime directory (or --http-addr). With --once
    it takes two readings (for the MBM rates) and prints one view; Ctrl-C ends the
    live view.
    """
    import shutil
    import time

    from resctrl_pipeline.config import parse_duration
    from resctrl_pipeline.instance import InstanceError, fetch_json
    from resctrl_pipeline.top import build_view, render

    try:
        period = parse_duration(interval)
    except ValueError as err:
        click.echo(f"error: --interval {interval!r}: {err}", err=True)
        sys.exit(2)
    sources, cfg = _load(config_file, flags)
    inst = _locate(sources, cfg)

    def reading() -> tuple[dict[str, Any], dict[str, Any]]:
        return fetch_json(f"{inst.http_url}/status"), fetch_json(f"{inst.http_url}/pods")

    try:
        status_doc, pods_doc = reading()
    except InstanceError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    previous: dict[str, Any] | None = None
    if once:
        # A second reading from the sampler's next summary gives the MBM rates.
        deadline = time.monotonic() + max(5.0, 3 * period)
        while time.monotonic() < deadline:
            time.sleep(0.25)  # pacing the polls for the next summary
            try:
                later_status, later = reading()
            except InstanceError:
                break
            if later.get("timestamp") != pods_doc.get("timestamp"):
                previous, status_doc, pods_doc = pods_doc, later_status, later
                break
        view = build_view(status_doc, pods_doc, previous)
        click.echo(json.dumps(view, indent=2) if fmt == "json" else render(view))
        return
    try:
        while True:
            view = build_view(status_doc, pods_doc, previous)
            rows = max(5, shutil.get_terminal_size().lines - 5)
            text = json.dumps(view) if fmt == "json" else render(view, max_pods=rows)
            if fmt == "text":
                click.clear()
            click.echo(text)
            time.sleep(period)  # the refresh period the user asked for
            previous = pods_doc
            try:
                status_doc, pods_doc = reading()
            except InstanceError as err:
                click.echo(f"error: {err}", err=True)
                sys.exit(1)
    except KeyboardInterrupt:
        return


@main.command()
@_config_options
def check(config_file: str | None, **flags: Any) -> None:
    """Preflight of this node: resctrl, L3 monitoring, RMIDs, cgroups, NRI, permissions."""
    from resctrl_pipeline.preflight import run_checks

    _, cfg = _load(config_file, flags)
    verdicts = run_checks(cfg)
    width = max(len(v.name) for v in verdicts)
    for v in verdicts:
        click.echo(f"{v.status:<4}  {v.name:<{width}}  {v.detail}")
    sys.exit(1 if any(v.status == "FAIL" for v in verdicts) else 0)


@main.command()
@click.option("--duration", default="30s", show_default=True, help="How long to sample.")
@click.option(
    "--pods",
    default=5,
    show_default=True,
    type=click.IntRange(1, 200),
    help="Pods to start (busy, idle, thread-spawning, coming-and-going, ...).",
)
@click.option(
    "--output",
    default="",
    type=click.Path(),
    help="Directory for the Parquet files, relative to the current directory "
    "[default: a new directory under ./demo-output].",
)
@click.option("--keep-workdir", is_flag=True, help="Keep the emulated node's directory.")
@click.option(
    "--hardware",
    default="classic",
    show_default=True,
    help="Emulated hardware profile: classic, snc[:N], abmc[:COUNTERS], aet[:RMIDS], "
    "classes[:A,B], runtime-groups; combine with + (docs/emulator.md).",
)
def demo(duration: str, pods: int, output: str, keep_workdir: bool, hardware: str) -> None:
    """Run the real pipeline against an emulated node and print a per-pod summary."""
    from resctrl_pipeline.config import parse_duration
    from resctrl_pipeline.demo import DemoError, DemoOptions, run_demo
    from resctrl_pipeline.emulator.hardware import parse_hardware

    try:
        seconds = parse_duration(duration)
    except ValueError as err:
        click.echo(f"error: --duration {duration!r}: {err}", err=True)
        sys.exit(2)
    try:
        parse_hardware(hardware)
    except ValueError as err:
        click.echo(f"error: --hardware {hardware!r}: {err}", err=True)
        sys.exit(2)
    opts = DemoOptions(duration=seconds, pods=pods, output=output, keep_workdir=keep_workdir,
                       echo=click.echo, hardware=hardware)  # fmt: skip
    try:
        sys.exit(run_demo(opts))
    except DemoError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.code)


def _report_time(option: str, text: str | None, now_ns: int) -> int | None:
    """``--since``/``--until``: ISO 8601 (``2025-09-24``, ``2025-09-24T14:00:00Z``) or a
    duration before now (``90m``, ``2d``)."""
    from datetime import UTC, datetime

    from resctrl_pipeline.config import parse_duration

    if text is None:
        return None
    try:
        return now_ns - int(parse_duration(text) * 1e9)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        click.echo(f"error: {option} {text!r}: expected a time such as 2025-09-24T14:00:00Z, "
                   "a date, or a duration before now such as 6h", err=True)  # fmt: skip
        sys.exit(2)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e9)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--since", help="Rows from this time on: ISO 8601 (UTC if no zone) or a "
              "duration before now (6h, 2d).")  # fmt: skip
@click.option("--until", help="Rows before this time (same forms as --since).")
@click.option("--node", "nodes", multiple=True, help="Only this node (repeatable).")
@click.option("--namespace", "namespaces", multiple=True,
              help="Only pods in this namespace (repeatable).")  # fmt: skip
@click.option("--by", type=click.Choice(["pod", "namespace", "node"]), default="pod",
              show_default=True, help="What to rank.")  # fmt: skip
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Show the N highest by mean occupancy; 0 = all.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)  # fmt: skip
@click.option(
    "--plot",
    "plot_png",
    type=click.Path(dir_okay=False),
    help="Also draw occupancy (and MBM rate) over time of the top pods into this PNG "
    "(needs matplotlib).",
)
@click.option("--s3-endpoint", default="", envvar="AWS_ENDPOINT_URL",
              help="For s3:// paths on a non-AWS store: http(s)://host[:port].")  # fmt: skip
@click.option("--s3-region", default="", envvar="AWS_REGION", help="For s3:// paths.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr while scanning (default: on a terminal).")  # fmt: skip
def report(
    paths: tuple[str, ...], since: str | None, until: str | None, nodes: tuple[str, ...],
    namespaces: tuple[str, ...], by: str, top: int, fmt: str, plot_png: str | None,
    s3_endpoint: str, s3_region: str, progress: bool | None,
) -> None:  # fmt: skip
    """Noisy-neighbour ranking over Parquet files, directories or s3://bucket/prefix.

    Mean, p95 and max LLC occupancy and MBM rate per pod (or namespace, node), busiest
    first. On a live output directory the rows already durable in the file in
    progress are included. See docs/analysis.md.
    """
    import time

    import pyarrow as pa

    from resctrl_pipeline import report as rep

    now = time.time_ns()
    filters = rep.Filters(
        since_ns=_report_time("--since", since, now),
        until_ns=_report_time("--until", until, now), nodes=nodes, namespaces=namespaces,
    )  # fmt: skip
    show = sys.stderr.isatty() if progress is None else progress
    try:
        source = rep.open_source(paths, s3_endpoint=s3_endpoint, s3_region=s3_region)
        printer = rep.progress_printer(sys.stderr) if show else None
        found = rep.scan(source, filters, progress=printer)
        live = rep.in_progress_rows(source.local_dirs, filters, set(source.files))
        table = found.table
        if live.in_progress_rows:
            table = pa.concat_tables([table, live.table])
        if table.num_rows == 0 and found.files_found == 0 and live.in_progress_rows == 0:
            raise rep.ReportError("no *.parquet files (and no file in progress) found in "
                                  + ", ".join(paths))  # fmt: skip
        ranking = rep.rank(table, by)
        shown = ranking if top == 0 else ranking[:top]
        click.echo(rep.render(shown, by, fmt))
        note = f"{table.num_rows} rows from {found.files} of {found.files_found} file(s)"
        if table.num_rows == 0:
            note += " (no row matches --since/--until/--node/--namespace)"
        if live.in_progress_rows:
            note += (f", including {live.in_progress_rows} rows from the file in progress "
                     f"({', '.join(live.in_progress_files)})")  # fmt: skip
        if len(shown) < len(ranking):
            note += f"; top {len(shown)} of {len(ranking)} shown (--top 0 for all)"
        click.echo(note, err=fmt != "table")  # stdout stays machine-readable
        if plot_png:
            from resctrl_pipeline.report.plot import plot

            pods = ranking if by == "pod" else rep.rank(table, "pod")
            plot(table, pods, plot_png, top=min(top or 10, 10),
                 l3_cache_bytes=found.l3_cache_bytes)  # fmt: skip
            click.echo(f"plot written to {plot_png}", err=fmt != "table")
    except rep.ReportError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
