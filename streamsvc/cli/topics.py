"""`streamsvc topics plan|create|describe <topology>`: the topics of an application.

    streamsvc topics plan topologies/app.py [--sink sinks.py] [--partitions 6] [--retention-ms MS]
    streamsvc topics create topologies/app.py ...      # creates the missing ones, as a worker would
    streamsvc topics describe topologies/app.py ...    # partitions, settings, lag per partition per group

Roles: input, global-input, output, dlq, changelog (cleanup.policy=compact), repartition
(`<app_id>-<name>-repartition`, found by name), sink-dlq. `plan` flags problems (a derived topic whose
partition count differs from its inputs', a changelog that is not compacted) with `!` lines.
"""

from __future__ import annotations

import argparse

import orjson

from streamsvc.cli.admin_common import (
    EXIT_CODES_HELP,
    EXIT_OK,
    add_connection_args,
    admin_command,
    connection_from_args,
    settings_from_args,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = sub.add_parser(
        "topics",
        help="plan, create and describe an application's topics",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmds = topics.add_subparsers(dest="topics_command", required=True)
    for name, doc in (
        ("plan", "list the topics the application needs and how they compare with the cluster"),
        ("create", "create the missing topics"),
        ("describe", "partitions, settings, offsets and lag per partition per group"),
    ):
        p = cmds.add_parser(name, help=doc)
        p.add_argument("topology", help="file.py[:attr] or package.module:attr")
        p.add_argument(
            "--sink", action="append", default=[], metavar="SPEC", help="Iceberg sink specs (repeatable)"
        )
        p.add_argument(
            "--partitions", type=int, help="partitions of missing inputs (derived topics follow inputs)"
        )
        p.add_argument("--retention-ms", type=int, help="retention.ms of output and repartition topics")
        p.add_argument("--dlq-retention-ms", type=int, help="retention.ms of dead-letter topics")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "describe":
            p.add_argument("--group", action="append", default=[], help="another group to show lag for")
        add_connection_args(p)
        p.set_defaults(func=run)


@admin_command
def run(args: argparse.Namespace) -> int:
    from streamsvc.admin.app import load_app
    from streamsvc.admin.topics import create_topics, describe_lag, plan_topics, render_lag, render_plan
    from streamsvc.sinks.iceberg.spec import load_specs
    from streamsvc.topology.loader import load_topology

    settings = settings_from_args(args)
    admin = connection_from_args(args, settings).admin()
    specs = [s for ref in args.sink for s in load_specs(ref)]
    existing = set(admin.list_topics(timeout=30).topics)
    app = load_app(load_topology(args.topology), settings, existing, specs)
    plans = plan_topics(admin, app, args.partitions, args.retention_ms, args.dlq_retention_ms)
    if args.topics_command == "create":
        created = create_topics(admin, plans)
        print(f"created {len(created)} topic(s)" + "".join(f"\n  {t}" for t in created))
        plans = plan_topics(admin, app, args.partitions, args.retention_ms, args.dlq_retention_ms)
    if args.topics_command == "describe":
        groups = {app.group: [*app.inputs, *app.repartitions]}
        groups.update({s.group: [s.topic] for s in app.sinks})
        groups.update({g: [p.name for p in plans] for g in args.group})
        rows = describe_lag(admin, plans, groups)
        if args.json:
            print(orjson.dumps({"topics": [p.as_dict() for p in plans], "partitions": [
                {**r.__dict__, "lag": r.lag} for r in rows
            ]}, option=orjson.OPT_INDENT_2).decode())  # fmt: skip
        else:
            print(render_plan(plans) + "\n\n" + render_lag(rows))
        return EXIT_OK
    if args.json:
        print(orjson.dumps([p.as_dict() for p in plans], option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_plan(plans))
    return EXIT_OK
