"""Replication settings of created topics and the one-replica warning (pure: no broker)."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import BrokerMetadata, ClusterMetadata, PartitionMetadata, TopicMetadata
from structlog.testing import capture_logs

from streamsvc.config import Replication, load_settings
from streamsvc.errors import ConfigError
from streamsvc.runtime import topics


def _metadata(replicas: dict[str, int], hosts: list[str]) -> ClusterMetadata:
    meta = ClusterMetadata()
    for name, n in replicas.items():
        topic = TopicMetadata()
        part = PartitionMetadata()
        part.replicas = list(range(n))
        topic.partitions = {0: part}
        meta.topics[name] = topic
    for i, host in enumerate(hosts):
        broker = BrokerMetadata()
        broker.id, broker.host, broker.port = i, host, 9092
        meta.brokers[i] = broker
    return meta


def test_settings_default_to_the_broker_defaults_and_read_the_environment() -> None:
    assert load_settings(env={}).replication == Replication(-1, -1)
    env = {"STREAMSVC_REPLICATION_FACTOR": "3", "STREAMSVC_MIN_INSYNC_REPLICAS": "2"}
    assert load_settings(env=env).replication == Replication(3, 2)


@pytest.mark.parametrize(("rf", "isr"), [(0, -1), (-1, 0), (-5, 2), (2, 3)])
def test_impossible_replication_is_a_config_error(rf: int, isr: int) -> None:
    env = {"STREAMSVC_REPLICATION_FACTOR": str(rf), "STREAMSVC_MIN_INSYNC_REPLICAS": str(isr)}
    with pytest.raises(ConfigError):
        load_settings(env=env)


def test_dev_stack_is_loopback_only() -> None:
    assert topics.is_dev_stack(["127.0.0.1", "127.0.0.1"])
    assert topics.is_dev_stack(["localhost"])
    assert not topics.is_dev_stack(["127.0.0.1", "kafka-1.kafka.svc"])
    assert not topics.is_dev_stack(["10.0.0.7"])
    assert not topics.is_dev_stack([])


def test_only_one_replica_topics_outside_the_dev_stack_warn() -> None:
    meta = _metadata({"one": 1, "three": 3}, ["kafka-0.kafka", "kafka-1.kafka", "kafka-2.kafka"])
    assert topics.unreplicated(meta, ["one", "three", "absent"]) == ["one"]
    with capture_logs() as logs:
        topics._warn_if_unreplicated(meta, ["one", "three"])
        topics._warn_if_unreplicated(_metadata({"one": 1}, ["127.0.0.1"]), ["one"])  # the dev stack
        topics._warn_if_unreplicated(meta, ["three"])
    assert [(e["event"], e["log_level"], e["topics"]) for e in logs] == [
        ("topics_created_with_one_replica", "warning", ["one"])
    ]
