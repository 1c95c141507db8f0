"""`streamsvc dev ...`: development helpers (the local Kafka broker)."""

from __future__ import annotations

import argparse

from streamsvc.dev import kafka


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="development helpers")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    k = dev_sub.add_parser("kafka", help="a real single-node Kafka (KRaft) from Maven Central jars")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--fresh", action="store_true", help="start: wipe the broker's data first")
    k.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    local = kafka.LocalKafka.from_env()
    if args.action == "start":
        print(kafka.start(local, fresh=args.fresh))
        return 0
    if args.action == "stop":
        kafka.stop(local)
        return 0
    return 0 if kafka.status(local) else 3
