"""`streamsvc reset-app <topology>`: reset an application so that running it again reproduces its outputs.

    streamsvc reset-app topologies/app.py [--sink sinks.py ...] [<scenario>, default --to-earliest]
                        [--internal-topics delete|truncate] [--iceberg-reset rollback|rewrite]
                        [--dry-run | --execute]

Stop every worker and sink of the application first. Resets the input offsets of its consumer group
(any replay scenario), deletes (or truncates) its changelog and repartition topics, deletes its local
state, and resets the offsets its Iceberg sinks hold in their tables. Output topics are left alone.
A dry run (the default) prints the plan and changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamsvc.admin.replay import Scenario, parse_plan_csv
from streamsvc.cli.admin_common import (
    EXIT_CODES_HELP,
    EXIT_OK,
    add_connection_args,
    add_execute_args,
    add_scenario_args,
    admin_command,
    connection_from_args,
    scenario_from_args,
    settings_from_args,
    warn_dry_run,
)
from streamsvc.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reset-app",
        help="reset an application: input offsets, internal topics, local state, Iceberg sink offsets",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("topology", help="file.py[:attr] or package.module:attr")
    p.add_argument(
        "--sink",
        action="append",
        default=[],
        metavar="SPEC",
        help="Iceberg sink specs of the application, file.py[:attr] (repeatable)",
    )
    add_scenario_args(p, required=False)
    p.add_argument(
        "--internal-topics",
        choices=["delete", "truncate"],
        default="delete",
        help="delete the changelog/repartition topics (default; the worker recreates them) or empty them "
        "in place, keeping their settings",
    )
    p.add_argument(
        "--iceberg-reset",
        choices=["rollback", "rewrite"],
        default="rollback",
        help="roll sink tables back to the last snapshot at or before the target (default), or delete the "
        "rows after it and rewrite the offsets",
    )
    add_execute_args(p)
    add_connection_args(p)
    p.set_defaults(func=run)


@admin_command
def run(args: argparse.Namespace) -> int:
    from streamsvc.admin.app_reset import execute_reset_app, plan_reset_app
    from streamsvc.sinks.iceberg.catalog import load_catalog_config, make_catalog
    from streamsvc.sinks.iceberg.spec import load_specs
    from streamsvc.topology.loader import load_topology

    settings = settings_from_args(args)
    scenario = scenario_from_args(args, default=Scenario("to-earliest"))
    assert scenario is not None
    plan_csv = None
    if scenario.kind == "from-file":
        path = Path(scenario.value or "")
        if not path.is_file():
            raise ConfigError(f"--from-file {path} does not exist")
        plan_csv = parse_plan_csv(path.read_text(), [settings.effective_group_id])
    topology = load_topology(args.topology)
    specs = [s for ref in args.sink for s in load_specs(ref)]
    catalog = make_catalog(load_catalog_config(args.config)) if specs else None
    warn_dry_run(args)
    admin = connection_from_args(args, settings).admin()
    plan = plan_reset_app(
        admin,
        topology,
        settings,
        specs,
        scenario,
        args.internal_topics,
        args.iceberg_reset,
        catalog,
        plan_csv,
    )
    if not args.execute:
        print("----Dry run displays the actions which will be performed when running the reset----")
    print(plan.describe())
    if args.execute:
        execute_reset_app(admin, plan, catalog, lambda line: print(f"[reset-app] {line}", file=sys.stderr))
        print("Done.")
    return EXIT_OK
