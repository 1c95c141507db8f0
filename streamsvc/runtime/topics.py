"""Topic administration shared by the runtime, the CLI, the demo and the tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ClusterMetadata,
    NewTopic,
    OffsetSpec,
)

from streamsvc.config import BROKER_DEFAULT, Replication
from streamsvc.errors import ConfigError
from streamsvc.observability.logging import get_logger, kafka_logging

_NO_LEADER_YET = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.UNKNOWN_LEADER_EPOCH,  # a broker whose metadata lags the partition's new leader epoch
        KafkaError.FENCED_LEADER_EPOCH,
    }
)


def admin_client(bootstrap: str, config: Mapping[str, Any] | None = None) -> AdminClient:
    """An admin client; `config` adds client properties (security settings from `--command-config`)."""
    return AdminClient({**kafka_logging(component="admin"), **(config or {}), "bootstrap.servers": bootstrap})


def partition_counts(admin: AdminClient, topics: list[str], timeout: float = 10.0) -> dict[str, int]:
    """Partition count of each existing topic among `topics` (missing topics are left out)."""
    meta = admin.list_topics(timeout=timeout)
    return {
        t: len(meta.topics[t].partitions) for t in topics if t in meta.topics and not meta.topics[t].error
    }


def ensure_topics(
    admin: AdminClient,
    topics: Mapping[str, int],
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    *,
    replication: Replication | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (name -> partitions); return the names created.

    `replication` (from `Settings.replication`) sets the replication factor and `min.insync.replicas`;
    left at -1 (the default) the broker's defaults apply. A topic that ends up with one replica on a
    cluster that is not the local dev stack is logged as a warning: one broker restart makes it
    unavailable."""
    rep = (replication or Replication()).validate()
    topic_config = dict(config or {})
    if rep.min_insync_replicas != BROKER_DEFAULT:
        topic_config.setdefault("min.insync.replicas", str(rep.min_insync_replicas))
    existing = partition_counts(admin, list(topics), timeout)
    missing = [
        NewTopic(t, n, rep.replication_factor, config=topic_config)
        for t, n in topics.items()
        if t not in existing
    ]
    if not missing:
        return []
    created = []
    for name, fut in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            fut.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ConfigError(f"cannot create topic {name}: {exc.args[0]}") from exc
    meta = _wait_for_metadata(admin, created, timeout)
    if meta is not None:
        _warn_if_unreplicated(meta, created)
    for topic in created:
        # With several brokers, the metadata one broker shows can run ahead of what the partitions'
        # leaders have applied: until a leader answers for its partition, reading (e.g. a changelog
        # restore right after creation) gets UNKNOWN_TOPIC_OR_PART. end_offsets asks every leader.
        end_offsets(admin, topic, read_committed=False, timeout=timeout)
    return created


def _wait_for_metadata(admin: AdminClient, topics: list[str], timeout: float) -> ClusterMetadata | None:
    """Until every partition of the new topics has a leader (a fresh topic answers NOT_LEADER before);
    returns the metadata that showed it."""
    deadline = time.monotonic() + timeout
    while topics and time.monotonic() < deadline:
        meta = admin.list_topics(timeout=timeout)
        if all(
            t in meta.topics
            and not meta.topics[t].error
            and meta.topics[t].partitions
            and all(p.leader >= 0 for p in meta.topics[t].partitions.values())
            for t in topics
        ):
            return meta
        time.sleep(0.1)
    return None


def is_dev_stack(broker_hosts: Iterable[str]) -> bool:
    """The local dev broker or cluster: every broker advertises a loopback address."""
    hosts = list(broker_hosts)
    return bool(hosts) and all(h in ("localhost", "::1") or h.startswith("127.") for h in hosts)


def unreplicated(meta: ClusterMetadata, topics: Iterable[str]) -> list[str]:
    """Those of `topics` with a partition that has a single replica."""
    return sorted(
        t
        for t in topics
        if t in meta.topics and any(len(p.replicas) == 1 for p in meta.topics[t].partitions.values())
    )


def _warn_if_unreplicated(meta: ClusterMetadata, created: list[str]) -> None:
    single = unreplicated(meta, created)
    if single and not is_dev_stack(str(b.host) for b in meta.brokers.values()):
        get_logger().warning(
            "topics_created_with_one_replica",
            topics=single,
            hint="set replication_factor (STREAMSVC_REPLICATION_FACTOR, e.g. 3) and min_insync_replicas "
            "(STREAMSVC_MIN_INSYNC_REPLICAS, e.g. 2), or the broker's default.replication.factor",
        )


def delete_topics(admin: AdminClient, topics: list[str], timeout: float = 30.0) -> None:
    if not topics:
        return
    for fut in admin.delete_topics(topics, operation_timeout=timeout).values():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


def end_offsets(
    admin: AdminClient, topic: str, read_committed: bool = True, timeout: float = 30.0
) -> dict[int, int]:
    """Latest offsets per partition; with `read_committed` this is the last stable offset (LSO)."""
    parts = partition_counts(admin, [topic]).get(topic, 0)
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    found = list_offsets(admin, [(topic, p) for p in range(parts)], latest, read_committed, timeout)
    return {p: offset for (_, p), offset in found.items()}


def list_offsets(
    admin: AdminClient,
    partitions: Iterable[tuple[str, int]],
    spec: OffsetSpec,
    read_committed: bool = False,
    timeout: float = 30.0,
) -> dict[tuple[str, int], int]:
    """The offset `spec` (earliest, latest, for_timestamp) names in each (topic, partition); -1 where a
    timestamp is past every record. Like Kafka's tools, the default isolation is read_uncommitted."""
    request = {TopicPartition(t, p): spec for t, p in partitions}
    if not request:
        return {}
    level = IsolationLevel.READ_COMMITTED if read_committed else IsolationLevel.READ_UNCOMMITTED
    deadline = time.monotonic() + timeout
    while True:
        result = admin.list_offsets(request, isolation_level=level, request_timeout=timeout)
        try:
            return {(tp.topic, tp.partition): fut.result().offset for tp, fut in result.items()}
        except KafkaException as exc:
            # A topic created a moment ago (e.g. a DLQ the worker just made) may not have a leader yet.
            err = exc.args[0]
            if not (err.retriable() or err.code() in _NO_LEADER_YET) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_all(
    bootstrap: str,
    topic: str,
    read_committed: bool = True,
    timeout: float = 60.0,
    config: Mapping[str, Any] | None = None,
) -> list[Message]:
    """Every record currently in `topic` (up to the LSO with `read_committed`), each partition in offset
    order. `config` adds client properties (security settings)."""
    return list(iter_records(bootstrap, topic, read_committed, timeout, config))


def iter_records(
    bootstrap: str,
    topic: str,
    read_committed: bool = True,
    timeout: float = 60.0,
    config: Mapping[str, Any] | None = None,
    start: Mapping[int, int] | None = None,
) -> Iterator[Message]:
    """Stream the records of `topic` present now: from `start` (partition -> offset; every partition
    from its beginning when None, only the partitions listed otherwise) up to the end offsets read first
    (the LSO with `read_committed`); records produced meanwhile may follow. `timeout` bounds the time
    without progress."""
    admin = admin_client(bootstrap, config)
    ends = end_offsets(admin, topic, read_committed)
    begin = {p: OFFSET_BEGINNING for p in ends} if start is None else dict(start)
    pending = {p: ends[p] for p, first in begin.items() if p in ends and ends[p] > max(first, 0)}
    if not pending:
        return
    consumer = Consumer(
        {
            **(config or {}),
            "bootstrap.servers": bootstrap,
            "group.id": f"streamsvc-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            **kafka_logging(component="reader"),
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, begin[p]) for p in pending])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(pending)} did not reach {ends}")
            msgs = consumer.consume(num_messages=10000, timeout=0.5)
            for msg in msgs:
                if msg.error() is None:
                    yield msg
            if msgs:
                deadline = time.monotonic() + timeout
            for tp in consumer.position([TopicPartition(topic, p) for p in list(pending)]):
                if tp.offset >= pending[tp.partition]:
                    del pending[tp.partition]
    finally:
        consumer.close()
