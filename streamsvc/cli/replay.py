"""`streamsvc replay`: reset a consumer group's offsets, like `kafka-consumer-groups.sh --reset-offsets`.

    streamsvc replay --group G --topic T[:P,P] | --all-topics  <scenario>  [--dry-run | --execute] [--export]

A dry run (the default) prints the new offsets and changes nothing; `--execute` commits them, only
while the group is Empty or Dead. `--export` prints the plan as Kafka's CSV instead of the table; feed
it back with `--from-file`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamsvc.admin.replay import Scope, export_csv, format_table, parse_topic_args, reset_groups
from streamsvc.cli.admin_common import (
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_REFUSED,
    add_connection_args,
    add_execute_args,
    add_scenario_args,
    admin_command,
    connection_from_args,
    scenario_from_args,
    warn_dry_run,
)
from streamsvc.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="reset consumer group offsets (kafka-consumer-groups.sh --reset-offsets)",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--group", action="append", required=True, help="consumer group (repeatable)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--topic", action="append", default=[], help="topic, or topic:0,1,2 for some partitions (repeatable)"
    )
    scope.add_argument(
        "--all-topics", action="store_true", help="every partition the group has committed offsets for"
    )
    add_scenario_args(p, required=True)
    add_execute_args(p)
    p.add_argument("--export", action="store_true", help="print the plan as CSV (Kafka's format)")
    add_connection_args(p)
    p.set_defaults(func=run)


@admin_command
def run(args: argparse.Namespace) -> int:
    scenario = scenario_from_args(args)
    assert scenario is not None  # argparse requires one
    if scenario.kind != "from-file" and not args.topic and not args.all_topics:
        raise ConfigError("One of the reset scopes should be defined: --all-topics, --topic.")
    parse_topic_args(args.topic)  # a malformed `t:p` is a user error before any Kafka call
    plan_csv = None
    if scenario.kind == "from-file":
        path = Path(scenario.value or "")
        if not path.is_file():
            raise ConfigError(f"--from-file {path} does not exist")
        plan_csv = path.read_text()
    warn_dry_run(args)
    admin = connection_from_args(args).admin()
    groups = list(dict.fromkeys(args.group))
    plans = reset_groups(
        admin, groups, Scope(tuple(args.topic), args.all_topics), scenario, args.execute, plan_csv
    )
    for plan in plans:
        for warning in plan.warnings:
            print(f"WARN: {warning}", file=sys.stderr)
        if plan.error:
            print(f"Error: {plan.error}", file=sys.stderr)
    done = [p for p in plans if not p.refused]
    if args.export:
        sys.stdout.write(export_csv(done, single_group=len(groups) == 1))
    else:
        print(format_table(done))
    return EXIT_REFUSED if len(done) < len(plans) else EXIT_OK
