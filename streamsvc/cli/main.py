"""The `streamsvc` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streamsvc.cli import demo, dev, dlq, generate, iceberg, replay, reset_app, schemas, topics
from streamsvc.config import load_settings
from streamsvc.errors import StreamsvcError
from streamsvc.observability.logging import configure_logging


def _run(args: argparse.Namespace) -> int:
    from streamsvc.runtime.worker import Worker
    from streamsvc.topology.loader import load_topology

    settings = load_settings(args.config)
    topologies = [load_topology(ref) for ref in args.topology]
    worker = Worker(topologies, settings, until_caught_up=args.until_caught_up)
    code = worker.run()
    for line in worker.errors:
        print(f"streamsvc: error: {line}", file=sys.stderr)
    if args.until_caught_up:
        from streamsvc.runtime.summary import format_summary

        print(format_summary(worker.agents), flush=True)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamsvc",
        description=__doc__,
        epilog="`streamsvc COMMAND --help` describes each command; docs/contracts.md the guarantees.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default="json",
        help="structlog JSON lines on stderr (default) or console lines for humans",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a worker for one or more topologies",
        description="Run one agent per topology until SIGTERM/SIGINT (or --until-caught-up). Exit codes: "
        "0 drained or caught up, 1 error (configuration, crash, stuck client), 2 fatal Kafka error (fenced).",
    )
    run.add_argument("topology", nargs="+", help="file.py[:attr] or package.module:attr")
    run.add_argument("--config", help="TOML config file (also STREAMSVC_CONFIG)")
    run.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once the input present at start-up is processed, then print the outcome summary "
        "(per source: consumed, emitted, filtered, dead-lettered by reason, late; the invariant)",
    )
    run.set_defaults(func=_run)
    dev.add_parser(sub)
    demo.add_parser(sub)
    generate.add_parser(sub)
    iceberg.add_parser(sub)
    schemas.add_parser(sub)
    replay.add_parser(sub)
    reset_app.add_parser(sub)
    dlq.add_parser(sub)
    topics.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, json=args.log_format == "json")
    try:
        code: int = args.func(args)
    except StreamsvcError as exc:
        print(f"streamsvc: error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
