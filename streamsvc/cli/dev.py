"""`streamsvc dev ...`: development helpers: the local Kafka broker (or a 3-broker cluster), schema
registry, and S3 + Iceberg REST lake."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

from streamsvc.dev import kafka, kafka_cluster, lake, registry


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="development helpers")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    k = dev_sub.add_parser("kafka", help="a real Kafka (KRaft) from Maven Central jars")
    k.add_argument(
        "action",
        choices=["start", "stop", "status"],
        help="start, stop or report the local broker (exit 3: not running)",
    )
    k.add_argument("--fresh", action="store_true", help="start: wipe the broker's data first")
    k.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="1: the single dev broker (STREAMSVC_KAFKA_PORT); 3 or more: a local cluster of combined "
        "broker+controller nodes, replication factor 3, min.insync.replicas 2 (STREAMSVC_KAFKA_CLUSTER_PORT)",
    )
    k.set_defaults(func=run)
    r = dev_sub.add_parser(
        "registry",
        help="a real schema registry (Apicurio, Confluent-compatible API) from Maven Central",
        description="Apicurio Registry on 127.0.0.1:$STREAMSVC_REGISTRY_PORT (default 8081, management "
        "port +1), in-memory storage. `start` prints the URL to use as STREAMSVC_REGISTRY_URL; "
        "`status` exits 3 when it is not running.",
    )
    r.add_argument(
        "action",
        choices=["start", "stop", "status"],
        help="start, stop or report the local registry (exit 3: not running)",
    )
    r.set_defaults(func=run_registry)

    lk = dev_sub.add_parser("lake", help="a local S3 (versitygw) + Iceberg REST catalog, on loopback")
    lk.add_argument(
        "action",
        choices=["start", "stop", "status", "env", "install"],
        help="start/stop/status the lake, print its client environment (env), or build/fetch it (install)",
    )
    lk.add_argument("--fresh", action="store_true", help="start: wipe the lake's objects and catalog first")
    lk.set_defaults(func=run_lake)


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


def run_registry(args: argparse.Namespace) -> int:
    local = registry.LocalRegistry.from_env()
    if args.action == "start":
        print(registry.start(local))
        return 0
    if args.action == "stop":
        registry.stop(local)
        return 0
    return 0 if registry.status(local) else 3


def run_lake(args: argparse.Namespace) -> int:
    """start/env print `export` lines for a client (sink, Spark, DuckDB) of the local lake; install only
    builds versitygw and fetches the REST fixture (CI does it up front)."""
    local = lake.LocalLake.from_env()
    if args.action == "install":
        lake.install(local)
        return 0
    if args.action == "start":
        env = lake.start(local, fresh=args.fresh)
    elif args.action == "env":
        env = local.client_env()
    elif args.action == "stop":
        lake.stop(local)
        return 0
    else:
        return 0 if lake.status(local) else 3
    for key, value in env.items():
        print(f"export {key}={value}")
    return 0
