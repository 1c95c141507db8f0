"""`streamsvc dev ...`: development helpers (the local Kafka broker, or a local 3-broker cluster)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

from streamsvc.dev import kafka, kafka_cluster


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="development helpers")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    k = dev_sub.add_parser("kafka", help="a real Kafka (KRaft) from Maven Central jars")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--fresh", action="store_true", help="start: wipe the broker's data first")
    k.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="1: the single dev broker (STREAMSVC_KAFKA_PORT); 3 or more: a local cluster of combined "
        "broker+controller nodes, replication factor 3, min.insync.replicas 2 (STREAMSVC_KAFKA_CLUSTER_PORT)",
    )
    k.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start: Callable[[], str]
    if args.brokers == 1:
        local = kafka.LocalKafka.from_env()
        start = partial(kafka.start, local, fresh=args.fresh)
        stop, status = partial(kafka.stop, local), partial(kafka.status, local)
    else:
        cluster = kafka_cluster.LocalCluster.from_env(args.brokers)
        start = partial(kafka_cluster.start, cluster, fresh=args.fresh)
        stop, status = partial(kafka_cluster.stop, cluster), partial(kafka_cluster.status, cluster)
    if args.action == "start":
        print(start())
        return 0
    if args.action == "stop":
        stop()
        return 0
    return 0 if status() else 3
