"""Options, exit codes and error handling shared by the operator commands (replay, reset-app, dlq, topics).

Exit codes: 0 done (or planned, on a dry run); 1 error (bad input, Kafka or catalog error: one line on
stderr, no traceback); 2 usage error (argparse); 3 refused because a consumer group is still active.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from typing import TextIO

from confluent_kafka import KafkaError, KafkaException

from streamsvc.admin.connection import Connection
from streamsvc.admin.replay import SCENARIOS, GroupActiveError, Scenario, parse_datetime, parse_duration
from streamsvc.config import Settings, load_settings
from streamsvc.errors import StreamsvcError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3
EXIT_CODES_HELP = (
    "exit codes: 0 done (dry run: planned), 1 error, 2 usage error, 3 refused (consumer group active)"
)
DRY_RUN_WARNING = "WARN: No action will be performed as the --execute option is missing."

_SCENARIO_HELP = {
    "to-earliest": "reset offsets to the earliest offset (log start)",
    "to-latest": "reset offsets to the latest offset (log end)",
    "to-current": "reset offsets to the current committed offset (log end where none)",
    "to-offset": "reset offsets to a specific offset (clamped into [log-start, log-end])",
    "to-datetime": "reset offsets to the first record at or after a datetime, "
    "format YYYY-MM-DDTHH:mm:SS.sss (UTC unless it carries Z or +hh:mm)",
    "by-duration": "reset offsets to the first record at or after now minus a duration, format PnDTnHnMnS",
    "shift-by": "shift the committed offsets by N (positive or negative; clamped)",
    "from-file": "reset offsets to the values of a CSV plan (Kafka's --export format)",
}
_METAVAR = {
    "to-offset": "N",
    "to-datetime": "DATETIME",
    "by-duration": "DURATION",
    "shift-by": "N",
    "from-file": "PLAN.csv",
}


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-server",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default: bootstrap_servers from --config/STREAMSVC_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--command-config",
        metavar="FILE",
        help="Kafka client properties file (security settings), as for Kafka's own tools",
    )
    parser.add_argument("--config", help="streamsvc TOML config file (also STREAMSVC_CONFIG)")


def add_scenario_args(parser: argparse.ArgumentParser, required: bool) -> None:
    """Exactly one of Kafka's eight reset scenarios."""
    group = parser.add_argument_group("reset scenario (exactly one)")
    exclusive = group.add_mutually_exclusive_group(required=required)
    for kind in SCENARIOS:
        if kind in _METAVAR:
            exclusive.add_argument(f"--{kind}", metavar=_METAVAR[kind], help=_SCENARIO_HELP[kind])
        else:
            exclusive.add_argument(f"--{kind}", action="store_true", help=_SCENARIO_HELP[kind])


def add_execute_args(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="only show what would change (the default)")
    mode.add_argument("--execute", action="store_true", help="apply the changes")


def scenario_from_args(args: argparse.Namespace, default: Scenario | None = None) -> Scenario | None:
    for kind in SCENARIOS:
        value = getattr(args, kind.replace("-", "_"), None)
        if value is True:
            return Scenario(kind)
        if isinstance(value, str):
            if kind in ("to-offset", "shift-by"):
                try:
                    int(value)
                except ValueError:
                    raise StreamsvcError(f"--{kind} needs a whole number, got {value!r}") from None
            elif kind == "to-datetime":
                parse_datetime(value)  # fail before touching the cluster
            elif kind == "by-duration":
                parse_duration(value)
            return Scenario(kind, value)
    return default


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def connection_from_args(args: argparse.Namespace, settings: Settings | None = None) -> Connection:
    bootstrap = args.bootstrap_server or (settings or settings_from_args(args)).bootstrap_servers
    return Connection.from_args(bootstrap, args.command_config)


def warn_dry_run(args: argparse.Namespace) -> None:
    if not args.execute and not args.dry_run:
        print(DRY_RUN_WARNING, file=sys.stderr)


def admin_command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors an operator can cause or meet into one stderr line and an exit code."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except GroupActiveError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except KafkaException as exc:
            err = exc.args[0] if exc.args else exc
            text = f"{err.str()} [{err.name()}]" if isinstance(err, KafkaError) else str(err)
            raise StreamsvcError(f"Kafka: {text}") from exc
        except (OSError, TimeoutError) as exc:
            raise StreamsvcError(str(exc)) from exc
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return run


class Progress:
    """Progress lines on stderr for long operations, at most one per `every_s` seconds."""

    def __init__(self, what: str, total: int | None = None, every_s: float = 2.0, out: TextIO | None = None):
        self.what = what
        self.total = total
        self.every_s = every_s
        self.out = out or sys.stderr
        self.done = 0
        self._last = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._print()

    def _print(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        print(f"[{self.what}] {self.done}{of}", file=self.out, flush=True)

    def finish(self) -> None:
        if self.done:
            self._print()
