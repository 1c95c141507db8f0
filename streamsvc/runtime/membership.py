"""Consumer-group membership facts the task manager needs: incremental protocols, member-only settings,
partitions no member holds (a cached static assignment)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamsvc.eos.errors import while_coordinator_moves
from streamsvc.runtime.topics import admin_client

MEMBER_ONLY = frozenset(
    {"group.instance.id", "partition.assignment.strategy", "group.protocol", "statistics.interval.ms"}
)


def is_incremental(conf: Mapping[str, Any]) -> bool:
    """Whether the consumer keeps partitions across a rebalance (cooperative-sticky, KIP-848)."""
    strategy = str(conf.get("partition.assignment.strategy", ""))
    return "cooperative" in strategy or str(conf.get("group.protocol", "classic")).lower() == "consumer"


def uncovered_partitions(bootstrap: str, group: str, topics: set[str]) -> str | None:
    """Partitions of `topics` that no member of `group` is assigned (a cached static assignment)."""
    admin = admin_client(bootstrap)
    desc = while_coordinator_moves(
        lambda: admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15), 30
    )
    held = {
        (tp.topic, tp.partition)
        for member in desc.members
        if member.assignment is not None
        for tp in member.assignment.topic_partitions
    }
    meta = admin.list_topics(timeout=10).topics
    missing = sorted(
        (t, p)
        for t in topics
        if t in meta and not meta[t].error
        for p in meta[t].partitions
        if (t, p) not in held
    )
    return f"no member is assigned {fmt_partitions(missing)}" if missing else None


def fmt_partitions(tps: Any) -> list[str]:
    return [f"{t}:{p}" for t, p in sorted(tps)]
