"""`streamsvc dlq inspect|redrive <dlq-topic>`: look into a dead-letter topic, and re-drive records into
their source topics once the topology is fixed.

    streamsvc dlq inspect orders.dlq [--stage decode] [--samples 3] [--json]
    streamsvc dlq redrive orders.dlq --stage validate --error-class ExpectationFailed [--execute]

Both read committed records only. Selections combine (every condition must hold): `--partition`,
`--from-offset`/`--to-offset` (inclusive, DLQ offsets), `--stage`, `--error-class` (full name or its
last part), `--match REGEX` (on dlq.error.message), `--header NAME=VALUE` (any header, e.g.
dlq.source.partition=2). `redrive` is a dry run unless `--execute`; re-running it re-drives nothing twice.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from streamsvc.admin.dlq import Selection, inspect
from streamsvc.admin.redrive import redrive
from streamsvc.cli.admin_common import (
    EXIT_CODES_HELP,
    EXIT_OK,
    Progress,
    add_connection_args,
    add_execute_args,
    admin_command,
    connection_from_args,
    warn_dry_run,
)
from streamsvc.dlq.records import STAGES


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="inspect dead-letter topics and re-drive their records",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmds = dlq.add_subparsers(dest="dlq_command", required=True)
    ins = cmds.add_parser(
        "inspect", help="counts by stage, error class, message pattern, source partition; samples"
    )
    _add_selection(ins)
    ins.add_argument("--samples", type=int, default=5, help="records shown in full (default 5)")
    ins.add_argument("--json", action="store_true", help="print one JSON document")
    add_connection_args(ins)
    ins.set_defaults(func=run_inspect)
    red = cmds.add_parser("redrive", help="produce chosen records back into their source topics")
    _add_selection(red)
    add_execute_args(red)
    add_connection_args(red)
    red.set_defaults(func=run_redrive)


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic", help="the dead-letter topic (e.g. orders.dlq)")
    g = p.add_argument_group("selection")
    g.add_argument("--partition", type=int, action="append", default=[], help="DLQ partition (repeatable)")
    g.add_argument("--from-offset", type=int, help="first DLQ offset (inclusive)")
    g.add_argument("--to-offset", type=int, help="last DLQ offset (inclusive)")
    g.add_argument("--stage", action="append", default=[], choices=STAGES, help="dlq.stage (repeatable)")
    g.add_argument("--error-class", action="append", default=[], help="dlq.error.class (repeatable)")
    g.add_argument("--match", metavar="REGEX", help="regular expression searched in dlq.error.message")
    g.add_argument("--header", action="append", default=[], metavar="NAME=VALUE", help="header equals value")


def _selection(args: argparse.Namespace) -> Selection:
    return Selection.build(
        args.partition,
        args.from_offset,
        args.to_offset,
        args.stage,
        args.error_class,
        args.match,
        args.header,
    )


@admin_command
def run_inspect(args: argparse.Namespace) -> int:
    progress = Progress(f"reading {args.topic}")
    found = inspect(connection_from_args(args), args.topic, _selection(args), args.samples, progress.step)
    progress.finish()
    print(orjson.dumps(found.as_dict(), option=orjson.OPT_INDENT_2).decode() if args.json else found.render())
    return EXIT_OK


@admin_command
def run_redrive(args: argparse.Namespace) -> int:
    warn_dry_run(args)
    progress = Progress(f"reading {args.topic}")
    report = redrive(
        connection_from_args(args),
        args.topic,
        _selection(args),
        args.execute,
        say=lambda line: print(f"[redrive] {line}", file=sys.stderr),
        on_record=progress.step,
    )
    progress.finish()
    print(report.render())
    return EXIT_OK
