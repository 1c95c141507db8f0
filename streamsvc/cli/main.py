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
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamsvc", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=["json", "console"], default="json")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a worker for one or more topologies")
    run.add_argument("topology", nargs="+", help="file.py[:attr] or package.module:attr")
    run.add_argument("--config", help="TOML config file (also STREAMSVC_CONFIG)")
    run.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once every assigned partition is processed up to its end offset at assignment",
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
