"""Who leads what in a multi-broker cluster: partition leaders, transaction coordinators, replication.

The transaction coordinator of a transactional id is the leader of one `__transaction_state` partition,
chosen by the broker as `Utils.abs(transactionalId.hashCode) % partitionCount`
(`TransactionStateManager.partitionFor`; `Utils.abs` maps Integer.MIN_VALUE to 0). `java_string_hash`
reproduces Java's `String.hashCode` over UTF-16 code units.
"""

from __future__ import annotations

import time

from confluent_kafka import ElectionType
from confluent_kafka.admin import AdminClient

from streamsvc.errors import ConfigError

TRANSACTION_STATE_TOPIC = "__transaction_state"
_INT_MIN = -(2**31)


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode()`: s[0]*31^(n-1) + ... + s[n-1] over UTF-16 units, as a signed int32."""
    units = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return h - 2**32 if h >= 2**31 else h


def coordinator_partition(transactional_id: str, partitions: int) -> int:
    """The `__transaction_state` partition that holds `transactional_id`."""
    h = java_string_hash(transactional_id)
    return (0 if h == _INT_MIN else abs(h)) % partitions


def partition_leader(admin: AdminClient, topic: str, partition: int, timeout: float = 10.0) -> int:
    """Broker id leading `topic`/`partition` (-1 while it has none)."""
    meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or partition not in meta.partitions:
        raise ConfigError(f"{topic}[{partition}] is not in the cluster's metadata")
    return int(meta.partitions[partition].leader)


def transaction_coordinator(admin: AdminClient, transactional_id: str, timeout: float = 10.0) -> int:
    """Broker id currently coordinating `transactional_id` (the leader of its state partition)."""
    meta = admin.list_topics(TRANSACTION_STATE_TOPIC, timeout=timeout).topics.get(TRANSACTION_STATE_TOPIC)
    if meta is None or meta.error is not None or not meta.partitions:
        raise ConfigError(f"{TRANSACTION_STATE_TOPIC} does not exist yet (no transactional producer so far)")
    part = coordinator_partition(transactional_id, len(meta.partitions))
    return int(meta.partitions[part].leader)


def under_replicated(admin: AdminClient, timeout: float = 10.0) -> list[tuple[str, int]]:
    """Partitions (internal ones included) whose in-sync replicas are fewer than their replicas, or
    that have no leader."""
    out = []
    for name, topic in admin.list_topics(timeout=timeout).topics.items():
        for pid, part in topic.partitions.items():
            if part.leader < 0 or len(part.isrs) < len(part.replicas):
                out.append((name, pid))
    return sorted(out)


def wait_fully_replicated(admin: AdminClient, timeout: float = 180.0) -> None:
    """Until no partition is under-replicated (what a rolling restart waits for between brokers)."""
    deadline = time.monotonic() + timeout
    behind: list[tuple[str, int]] = []
    while time.monotonic() < deadline:
        try:
            behind = under_replicated(admin)
        except Exception:  # a broker that just went away may fail one metadata request
            behind = [("?", -1)]
        if not behind:
            return
        time.sleep(0.25)
    raise TimeoutError(f"{len(behind)} partitions still under-replicated after {timeout:.0f}s: {behind[:5]}")


def elect_preferred_leaders(admin: AdminClient, timeout: float = 60.0) -> None:
    """Give every partition's leadership back to its preferred replica, as Kafka itself does every
    `leader.imbalance.check.interval.seconds` (300 s): after a broker restart, leadership is spread
    over the brokers again."""
    # No timeout keywords: confluent-kafka 2.16.1's elect_leaders fails (SystemError) with them.
    admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout)
