"""The local 3-broker cluster itself: replication defaults, coordinator lookup, a node's crash and return."""

from __future__ import annotations

import logging
import re
import signal
import uuid

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from streamsvc.config import Replication
from streamsvc.dev import kafka_cluster
from streamsvc.dev.cluster_state import (
    TRANSACTION_STATE_TOPIC,
    elect_preferred_leaders,
    partition_leader,
    transaction_coordinator,
    under_replicated,
    wait_fully_replicated,
)
from streamsvc.errors import ConfigError
from streamsvc.runtime.topics import ensure_topics
from tests.support import committed_offsets, produce, wait_for

pytestmark = pytest.mark.cluster


def _topic_config(admin: AdminClient, topic: str, name: str) -> str:
    def value() -> str | None:
        [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
        try:
            return str(future.result(30)[name].value)
        except KafkaException:  # a broker whose metadata does not have the new topic yet
            return None

    return str(wait_for(value, 30, f"the config of {topic}"))


def _replicas(admin: AdminClient, topic: str) -> set[int]:
    """Replica counts of the topic's partitions (waiting out brokers whose metadata lags behind)."""

    def counts() -> set[int]:
        meta = admin.list_topics(topic, timeout=10).topics[topic]
        return set() if meta.error else {len(p.replicas) for p in meta.partitions.values()}

    return set(wait_for(counts, 30, f"{topic} in the metadata"))


def _leader(admin: AdminClient, topic: str) -> int | None:
    """Leader of partition 0, or None from a broker whose metadata does not have the topic yet."""
    try:
        return partition_leader(admin, topic, 0)
    except ConfigError:
        return None


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _client_coordinator(bootstrap: str, transactional_id: str) -> int:
    """The coordinator librdkafka's FindCoordinator request got from the brokers (from its eos debug log)."""
    handler = _Lines()
    logger = logging.getLogger(f"rdkafka.{transactional_id}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "debug": "eos",
            "logger": logger,
        }
    )
    producer.init_transactions(60)
    found = re.compile(r"Transaction coordinator is broker (\d+)")

    def answer() -> int | None:
        producer.poll(0.1)  # serves the queued log lines
        ids = [int(m.group(1)) for line in handler.lines if (m := found.search(line))]
        return ids[-1] if ids else None

    return int(wait_for(answer, 30, "librdkafka's FindCoordinator answer"))


def test_created_and_internal_topics_have_three_replicas_and_min_isr_two(
    bootstrap: str, admin: AdminClient, names
) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("defaults", 3)  # ensure_topics with the broker defaults
    assert _replicas(admin, topic) == {3}
    assert _topic_config(admin, topic, "min.insync.replicas") == "2"
    # The internal topics appear on first use: a group coordinator lookup, a transactional producer.
    committed_offsets(bootstrap, names("group"), topic, 3)
    _client_coordinator(bootstrap, f"probe-{uuid.uuid4().hex}")
    for internal in ("__consumer_offsets", TRANSACTION_STATE_TOPIC):
        wait_for(lambda t=internal: t in admin.list_topics(timeout=10).topics, 60, f"{internal} to exist")
        assert _replicas(admin, internal) == {3}
    assert _topic_config(admin, TRANSACTION_STATE_TOPIC, "min.insync.replicas") == "2"


def test_explicit_replication_settings_override_the_broker_defaults(admin: AdminClient, names) -> None:  # type: ignore[no-untyped-def]
    topic = names("explicit")
    names.track(topic)
    ensure_topics(admin, {topic: 2}, replication=Replication(replication_factor=2, min_insync_replicas=1))
    assert _replicas(admin, topic) == {2}
    assert _topic_config(admin, topic, "min.insync.replicas") == "1"


def test_coordinator_formula_agrees_with_find_coordinator(bootstrap: str, admin: AdminClient) -> None:
    # A transactional producer first, so that __transaction_state exists; then spread its leaders.
    _client_coordinator(bootstrap, f"probe-{uuid.uuid4().hex}")
    wait_fully_replicated(admin)
    elect_preferred_leaders(admin)
    meta = admin.list_topics(TRANSACTION_STATE_TOPIC, timeout=10).topics[TRANSACTION_STATE_TOPIC]
    assert len(meta.partitions) == kafka_cluster.INTERNAL_PARTITIONS
    leaders = {p.leader for p in meta.partitions.values()}
    assert len(leaders) == 3, (
        f"preferred leaders of {TRANSACTION_STATE_TOPIC} should span 3 brokers: {leaders}"
    )
    # Ids until every broker is the predicted coordinator of some of them, then ask the brokers.
    by_broker: dict[int, list[str]] = {}
    for i in range(500):
        tid = f"probe-{i}-{uuid.uuid4().hex}"
        by_broker.setdefault(transaction_coordinator(admin, tid), []).append(tid)
        if len(by_broker) == 3 and min(map(len, by_broker.values())) >= 3:
            break
    assert set(by_broker) == leaders
    for broker, ids in by_broker.items():
        for tid in ids[:3]:
            assert _client_coordinator(bootstrap, tid) == broker, tid


def test_a_killed_node_comes_back_and_its_partitions_catch_up(
    cluster: kafka_cluster.LocalCluster, bootstrap: str, admin: AdminClient, names
) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("crash", 3)
    victim = int(wait_for(lambda: _leader(admin, topic), 30, f"{topic} in every broker's metadata"))
    kafka_cluster.stop_node(cluster, victim, signal.SIGKILL)
    assert kafka_cluster.node_pid(cluster.node(victim)) is None
    wait_for(lambda: _leader(admin, topic) not in (None, victim, -1), 60, "a new leader of partition 0")
    # Two in-sync replicas of three: acks=all writes go on while the node is down.
    produce(bootstrap, topic, [(str(i).encode(), b"v") for i in range(1000)])
    assert any(t == topic for t, _ in under_replicated(admin))
    kafka_cluster.start_node(cluster, victim)
    wait_fully_replicated(admin)
    assert not under_replicated(admin)
