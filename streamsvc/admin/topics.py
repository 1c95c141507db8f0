"""The topics of one application (`streamsvc topics plan|create|describe`): inputs, outputs, DLQs,
changelogs and repartition topics, with partitions, replication and settings.

Derived topics get the partition count of the inputs, as the worker gives them when it creates them
itself (co-partitioned with their sources); changelogs are compacted (`CHANGELOG_CONFIG`). Creation goes
through `streamsvc.runtime.topics.ensure_topics`, so it makes exactly what a worker would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from streamsvc.admin.app import App, Role
from streamsvc.admin.replay import TP, committed_offsets, log_ends, log_starts
from streamsvc.runtime.topics import ensure_topics
from streamsvc.state.changelog import CHANGELOG_CONFIG

SHOWN_CONFIGS = ("cleanup.policy", "retention.ms", "min.compaction.lag.ms", "min.insync.replicas")


@dataclass
class TopicPlan:
    """One topic: what the application needs, and what the cluster has."""

    name: str
    role: Role
    partitions: int
    config: dict[str, str]
    exists: bool = False
    actual_partitions: int | None = None
    replication: int | None = None  # of the existing topic
    actual_config: dict[str, str] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.name,
            "role": self.role,
            "partitions": self.actual_partitions if self.exists else self.partitions,
            "replication": self.replication,
            "config": self.actual_config if self.exists else self.config,
            "exists": self.exists,
            "issues": self.issues,
        }


def plan_topics(
    admin: AdminClient,
    app: App,
    partitions: int | None = None,
    retention_ms: int | None = None,
    dlq_retention_ms: int | None = None,
) -> list[TopicPlan]:
    """Every topic of `app` with the partitions and settings it needs, compared with the cluster."""
    meta = admin.list_topics(timeout=30).topics
    existing = {t: m for t, m in meta.items() if not m.error}
    sources = [len(existing[t].partitions) for t in app.inputs if t in existing]
    derived = max(sources, default=partitions or 1)
    plans = []
    for name, role in app.roles().items():
        config: dict[str, str] = {}
        if role == "changelog":
            config = dict(CHANGELOG_CONFIG)
        elif role in ("dlq", "sink-dlq") and dlq_retention_ms is not None:
            config = {"retention.ms": str(dlq_retention_ms)}
        elif role in ("output", "repartition") and retention_ms is not None:
            config = {"retention.ms": str(retention_ms)}
        wanted = (partitions or 1) if role in ("input", "global-input") else derived
        plan = TopicPlan(name, role, wanted, config)
        if name in existing:
            parts = existing[name].partitions
            plan.exists, plan.actual_partitions = True, len(parts)
            plan.replication = len(next(iter(parts.values())).replicas) if parts else None
        plans.append(plan)
    _read_configs(admin, [p for p in plans if p.exists])
    for plan in plans:
        _check(plan, derived)
    return plans


def _read_configs(admin: AdminClient, plans: list[TopicPlan]) -> None:
    if not plans:
        return
    resources = {p.name: ConfigResource(ResourceType.TOPIC, p.name) for p in plans}
    futures = admin.describe_configs(list(resources.values()))
    for plan in plans:
        entries = futures[resources[plan.name]].result(30)
        plan.actual_config = {k: entries[k].value for k in SHOWN_CONFIGS if k in entries}


def _check(plan: TopicPlan, derived: int) -> None:
    if not plan.exists:
        return
    if plan.role in ("output", "dlq", "changelog", "repartition") and plan.actual_partitions != derived:
        plan.issues.append(f"has {plan.actual_partitions} partitions, its inputs {derived}")
    if plan.role == "changelog" and "compact" not in plan.actual_config.get("cleanup.policy", ""):
        plan.issues.append("a changelog must have cleanup.policy=compact")


def create_topics(admin: AdminClient, plans: list[TopicPlan]) -> list[str]:
    """Create the missing topics of the plan (name -> partitions, settings); returns those created."""
    created: list[str] = []
    groups: dict[tuple[tuple[str, str], ...], dict[str, int]] = {}
    for plan in plans:
        if not plan.exists:
            groups.setdefault(tuple(sorted(plan.config.items())), {})[plan.name] = plan.partitions
    for config, topics in groups.items():
        created += ensure_topics(admin, topics, dict(config))
    return sorted(created)


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    log_start: int
    log_end: int
    group: str | None
    committed: int | None

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(self.log_end - self.committed, 0)


def describe_lag(
    admin: AdminClient, plans: list[TopicPlan], groups: dict[str, list[str]]
) -> list[PartitionLag]:
    """Per partition of every existing topic: log start/end, and each group's committed offset and lag
    (`groups`: group -> the topics it consumes)."""
    tps: list[TP] = [(p.name, i) for p in plans if p.exists for i in range(p.actual_partitions or 0)]
    starts, ends = log_starts(admin, tps), log_ends(admin, tps)
    offsets = {g: committed_offsets(admin, g) for g in groups}
    rows = []
    for topic, partition in tps:
        readers: list[str | None] = [g for g, topics in groups.items() if topic in topics]
        for group in readers or [None]:
            done = offsets[group].get((topic, partition)) if group else None
            rows.append(
                PartitionLag(
                    topic, partition, starts[(topic, partition)], ends[(topic, partition)], group, done
                )
            )
    return rows


def render_plan(plans: list[TopicPlan]) -> str:
    fmt = "{:<60} {:<12} {:>10} {:>11}  {:<8} {}"
    out = [fmt.format("TOPIC", "ROLE", "PARTITIONS", "REPLICATION", "STATUS", "CONFIG")]
    for p in plans:
        d = p.as_dict()
        status = "exists" if p.exists else "missing"
        config = ",".join(f"{k}={v}" for k, v in sorted(d["config"].items())) or "-"
        rf = "-" if p.replication is None else str(p.replication)
        out.append(fmt.format(p.name, p.role, d["partitions"], rf, status, config))
        out += [f"    ! {issue}" for issue in p.issues]
    return "\n".join(out)


def render_lag(rows: list[PartitionLag]) -> str:
    fmt = "{:<60} {:>9} {:>10} {:>10}  {:<40} {:>14} {:>6}"
    out = [fmt.format("TOPIC", "PARTITION", "LOG-START", "LOG-END", "GROUP", "CURRENT-OFFSET", "LAG")]
    for r in rows:
        current = "-" if r.committed is None else str(r.committed)
        lag = "-" if r.lag is None else str(r.lag)
        out.append(fmt.format(r.topic, r.partition, r.log_start, r.log_end, r.group or "-", current, lag))
    return "\n".join(out)
