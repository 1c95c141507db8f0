"""`streamsvc iceberg ...`: run Kafka -> Iceberg sinks and maintain their tables.

Exit codes of `sink`: 0 after a clean drain (SIGTERM/SIGINT, or `--until-caught-up`), 2 after a fatal
error (fenced Kafka client, commit impossible), 1 after any other error.
Exit codes of `maintain`: 0 when every table was maintained, 1 when a step could not commit before
`--deadline` or failed otherwise, 3 when a table does not exist (the other tables are still maintained).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta

from streamsvc.config import load_settings
from streamsvc.errors import StreamsvcError
from streamsvc.observability.logging import configure_logging, get_logger

EXIT_OK, EXIT_ERROR, EXIT_FATAL, EXIT_NO_TABLE = 0, 1, 2, 3


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ice = sub.add_parser("iceberg", help="Kafka -> Iceberg sinks and table maintenance")
    _add_commands(ice)


def _add_commands(parser: argparse.ArgumentParser) -> None:
    cmds = parser.add_subparsers(dest="iceberg_command", required=True)
    sink = cmds.add_parser("sink", help="run Iceberg sink agents until SIGTERM")
    sink.add_argument("spec", nargs="+", help="file.py[:attr] or package.module:attr (default attr: sink)")
    sink.add_argument("--config", help="TOML config file (also STREAMSVC_CONFIG)")
    sink.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once every assigned partition is committed up to its end offset at assignment",
    )
    sink.set_defaults(func=run_sink)
    mt = cmds.add_parser(
        "maintain", help="expire snapshots, merge manifests, compact small files, sweep orphan files"
    )
    mt.add_argument("--table", action="append", required=True, help="namespace.name (repeatable)")
    mt.add_argument("--config", help="TOML config file (also STREAMSVC_CONFIG)")
    mt.add_argument("--older-than", type=float, default=24.0, help="expire snapshots older than H hours")
    mt.add_argument("--retain-last", type=int, default=10, help="always keep the newest N snapshots")
    mt.add_argument(
        "--orphans-older-than", type=float, default=72.0, help="delete orphans older than H hours"
    )
    mt.add_argument("--no-merge", action="store_true", help="do not merge manifests")
    mt.add_argument("--compact", action="store_true", help="rewrite small data files into target-size ones")
    mt.add_argument(
        "--target-file-size", type=int, help="bytes (default: the table's write.target-file-size-bytes)"
    )
    mt.add_argument(
        "--min-input-files", type=int, default=5, help="compact a partition from this many small files"
    )
    mt.add_argument(
        "--deadline", type=float, default=300.0, help="seconds per table to retry conflicting commits"
    )
    mt.add_argument("--dry-run", action="store_true", help="report only")
    mt.set_defaults(func=run_maintain)
    mg = cmds.add_parser("merge", help="merge CDC bronze tables into their silver tables once")
    mg.add_argument("spec", nargs="+", help="file.py[:attr] or package.module:attr (default attr: sink)")
    mg.add_argument("--config", help="TOML config file (also STREAMSVC_CONFIG)")
    mg.set_defaults(func=run_merge)


def run_sink(args: argparse.Namespace) -> int:
    """Run one agent per spec in a worker (control plane on `metrics_port`); SIGTERM finishes the open
    commit and exits 0."""
    from streamsvc.observability.http import HealthState
    from streamsvc.runtime.worker import Worker
    from streamsvc.sinks.iceberg.agent import IcebergSinkAgent
    from streamsvc.sinks.iceberg.catalog import load_catalog_config, make_catalog
    from streamsvc.sinks.iceberg.spec import load_specs

    settings = load_settings(args.config)
    catalog_config = load_catalog_config(args.config)
    specs = [s for ref in args.spec for s in load_specs(ref)]
    health = HealthState()
    agents = [
        IcebergSinkAgent(spec, settings, make_catalog(catalog_config), args.until_caught_up, health=health)
        for spec in specs
    ]
    worker = Worker([], settings, agents=agents, health=health)
    code = worker.run()
    for line in worker.errors:
        print(f"streamsvc iceberg: error: {line}", file=sys.stderr)
    return code


def run_maintain(args: argparse.Namespace) -> int:
    """Maintain each `--table`; prints one JSON line per table (its report, or its error)."""
    import orjson
    from pyiceberg.exceptions import NoSuchTableError

    from streamsvc.faults import faults_from_env
    from streamsvc.sinks.iceberg.catalog import load_catalog_config, make_catalog
    from streamsvc.sinks.iceberg.maintenance import maintain
    from streamsvc.sinks.iceberg.retry import MaintenanceTimeout

    config = load_catalog_config(args.config)
    catalog = make_catalog(config)
    faults = faults_from_env()
    code = EXIT_OK
    for ident in args.table:
        try:
            report = maintain(
                catalog.load_table(ident),
                older_than=timedelta(hours=args.older_than),
                retain_last=args.retain_last,
                merge=not args.no_merge,
                orphans_older_than=timedelta(hours=args.orphans_older_than),
                dry_run=args.dry_run,
                compact_files=args.compact,
                target_file_size=args.target_file_size,
                min_input_files=args.min_input_files,
                deadline_s=args.deadline,
                faults=faults,
            )
        except NoSuchTableError:
            error = f"table {ident} does not exist in catalog {config.name} ({config.uri})"
            print(f"streamsvc iceberg maintain: error: {error}", file=sys.stderr)
            print(orjson.dumps({"table": ident, "error": error}).decode())
            code = max(code, EXIT_NO_TABLE)
            continue
        except MaintenanceTimeout as exc:
            print(f"streamsvc iceberg maintain: error: {ident}: {exc}", file=sys.stderr)
            print(orjson.dumps({"table": ident, "error": str(exc)}).decode())
            code = max(code, EXIT_ERROR)
            continue
        print(orjson.dumps({"table": ident, **report.as_dict()}).decode())
    return code


def run_merge(args: argparse.Namespace) -> int:
    """One silver merge per spec that has a `silver_table`; prints one JSON report line each."""
    import orjson

    from streamsvc.faults import faults_from_env
    from streamsvc.sinks.iceberg.catalog import load_catalog_config, make_catalog
    from streamsvc.sinks.iceberg.merge import SilverMerger
    from streamsvc.sinks.iceberg.spec import load_specs

    settings = load_settings(args.config)
    catalog = make_catalog(load_catalog_config(args.config))
    faults = faults_from_env()
    log = get_logger(app=settings.app_id)
    for spec in (s for ref in args.spec for s in load_specs(ref)):
        if spec.silver_table is None:
            continue
        merger = SilverMerger(
            catalog,
            spec.table,
            spec.silver_table,
            list(spec.key_columns),
            f"{settings.effective_group_id}.{spec.name}",
            settings.topic(spec.source),
            faults=faults,
            log=log,
        )
        report = merger.merge()
        print(orjson.dumps({"silver": spec.silver_table, **report.as_dict()}).decode())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="streamsvc iceberg", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=["json", "console"], default="json")
    _add_commands(parser)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, json=args.log_format == "json")
    try:
        code: int = args.func(args)
    except StreamsvcError as exc:
        print(f"streamsvc iceberg: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
