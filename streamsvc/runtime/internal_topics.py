"""The internal topics of a topology: repartition topics and state changelogs, with their partition
counts and configs. The runtime creates them at start-up; `streamsvc topics create|plan` and
`streamsvc reset-app` find them here (by name: `<app_id>-<name>-repartition`,
`<app_id>.<agent>.<store>.changelog`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from streamsvc.config import Settings
from streamsvc.errors import TopologyError
from streamsvc.runtime.compiler import TopologyCompiler
from streamsvc.runtime.repartition import REPARTITION_CONFIG
from streamsvc.state.changelog import CHANGELOG_CONFIG
from streamsvc.topology.model import Topology


@dataclass(frozen=True)
class InternalTopic:
    name: str
    partitions: int
    kind: Literal["repartition", "changelog"]
    config: Mapping[str, str] = field(default_factory=dict)


def external_sources(compiled: TopologyCompiler) -> list[str]:
    """The source topics that are not the topology's own repartition topics."""
    internal = set(compiled.repartition_topics)
    return [t for t in compiled.source_topics if t not in internal]


def plan_internal_topics(
    compiled: TopologyCompiler, source_partitions: Mapping[str, int]
) -> list[InternalTopic]:
    """Repartition topics (upstream first) then changelogs, given the partition counts of the external
    source topics (`external_sources`). A repartition topic without a set count takes the count of the
    topic it is joined with, else its upstream's."""
    counts = dict(source_partitions)
    missing = sorted(set(external_sources(compiled)) - set(counts))
    if missing:
        raise TopologyError(f"partition counts of source topics {missing} are needed")
    plan: list[InternalTopic] = []
    partners: dict[str, list[str]] = {}
    for a, b in compiled.copartitioned:
        partners.setdefault(a, []).append(b)
        partners.setdefault(b, []).append(a)
    for r in compiled.repartitions:  # compiled upstream first, so its count is known
        # Without a set count, one joined with a topic takes that topic's count (co-partitioned, as
        # Kafka Streams does), else the upstream's.
        joined = [counts[t] for t in partners.get(r.topic, []) if t in counts]
        n = r.partitions or (joined[0] if joined else counts[r.upstream_topic])
        counts[r.topic] = n
        plan.append(InternalTopic(r.topic, n, "repartition", dict(REPARTITION_CONFIG)))
    for store in compiled.stores:
        plan.append(
            InternalTopic(
                store.changelog_topic, counts[store.source_topic], "changelog", dict(CHANGELOG_CONFIG)
            )
        )
    return plan


def internal_topics(
    topology: Topology, settings: Settings, source_partitions: Mapping[str, int]
) -> list[InternalTopic]:
    """Every internal topic `topology` needs under `settings` (real topic names; `source_partitions`:
    partition count per real external source topic)."""
    return plan_internal_topics(TopologyCompiler(topology, settings), source_partitions)


def consumer_group(compiled: TopologyCompiler, settings: Settings) -> str:
    """The consumer group of an agent: `<group>-<agent>` when it keeps state (windows, tables, interval
    joins), so that one stateful agent's rebalance never moves another's partitions and state;
    `<group>` (default: the app id) for stateless agents. (`<group>.<name>` belongs to Iceberg sinks.)"""
    group = settings.effective_group_id
    return f"{group}-{compiled.agent}" if compiled.stores else group


def agent_group_id(topology: Topology, settings: Settings) -> str:
    """`consumer_group` of a topology (for admin tools: replay, reset)."""
    return consumer_group(TopologyCompiler(topology, settings), settings)
