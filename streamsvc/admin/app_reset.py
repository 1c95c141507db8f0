"""`reset-app`: Kafka Streams' application reset, and more, for one topology.

Like `kafka-streams-application-reset.sh`: the application's consumer group must be inactive; its input
topics are reset (to the earliest offset by default, or any replay scenario); its internal topics -
changelogs and repartition topics - are deleted (the worker recreates them), or with `truncate`
emptied in place (repartition topics by DeleteRecords with the group moved to their end; compacted
changelogs, which Kafka refuses to truncate, recreated with the same partitions and settings). Unlike
it, local state is wiped too, and the offsets held by the application's Iceberg sinks are reset
(`sink_reset`), so that running the application again reproduces its outputs. Output topics are kept.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]
from pyiceberg.catalog import Catalog

from streamsvc.admin.app import App, load_app
from streamsvc.admin.replay import (
    TP,
    GroupActiveError,
    GroupPlan,
    Scenario,
    Scope,
    apply,
    format_table,
    log_ends,
    log_starts,
    plan_group,
    require_inactive,
)
from streamsvc.admin.sink_reset import Mode, SinkResetPlan, apply_sink_reset, plan_sink_reset
from streamsvc.config import Settings
from streamsvc.errors import ConfigError, StreamsvcError
from streamsvc.runtime.topics import delete_topics, end_offsets, ensure_topics, partition_counts
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from streamsvc.topology.model import Topology

InternalMode = Literal["delete", "truncate"]
Say = Callable[[str], None]


@dataclass
class ResetAppPlan:
    """Everything one `reset-app` run changes; `describe()` is what a dry run prints."""

    app: App
    scenario: Scenario
    internal_mode: InternalMode
    inputs: GroupPlan
    internal_topics: list[str]  # existing changelog and repartition topics
    repartition_ends: dict[TP, int] = field(default_factory=dict)  # truncate: new group offsets
    state_dirs: list[Path] = field(default_factory=list)
    sinks: list[SinkResetPlan] = field(default_factory=list)

    def describe(self) -> str:
        app = self.app
        out = [
            f"Application {app.app_id}, topology {app.agent}, "
            f"consumer group {app.group} ({self.inputs.state})",
            f"Reset-offsets for input topics {app.inputs} ({self.scenario}):",
            format_table([self.inputs]) or "  (no partitions)",
        ]
        out += [f"WARN: {w}" for w in self.inputs.warnings]
        verb = "Deleting" if self.internal_mode == "delete" else "Truncating"
        out.append(f"{verb} internal topics {self.internal_topics}")
        if self.repartition_ends:
            out.append("Seek-to-end for repartition topics:")
            out.append(format_table([GroupPlan(app.group, self.inputs.state, self.repartition_ends)]))
        out.append(f"Deleting local state {[str(p) for p in self.state_dirs]}")
        out += [s.describe() for s in self.sinks]
        return "\n".join(out)


def plan_reset_app(
    admin: AdminClient,
    topology: Topology,
    settings: Settings,
    specs: Sequence[IcebergSinkSpec],
    scenario: Scenario,
    internal_mode: InternalMode,
    iceberg_mode: Mode,
    catalog: Catalog | None,
    plan_csv: dict[str, dict[TP, int]] | None = None,
) -> ResetAppPlan:
    """Plan the reset; raises GroupActiveError (Kafka's message) when a group of the app is active."""
    existing = set(admin.list_topics(timeout=30).topics)
    app = load_app(topology, settings, existing, specs)
    for sink in app.sinks:
        require_inactive(admin, sink.group)
    inputs = plan_group(
        admin, app.group, Scope(tuple(t for t in app.inputs if t in existing)), scenario, plan_csv
    )
    if inputs.error is not None:
        raise GroupActiveError(inputs.error)
    internal = [t for t in [*app.changelogs, *app.repartitions] if t in existing]
    plan = ResetAppPlan(app, scenario, internal_mode, inputs, internal, state_dirs=app.state_dirs(settings))
    if internal_mode == "truncate" and app.repartitions:
        counts = partition_counts(admin, app.repartitions)
        plan.repartition_ends = log_ends(admin, [(t, p) for t, n in counts.items() for p in range(n)])
    if app.sinks:
        if catalog is None:
            raise ConfigError("Iceberg sinks need a catalog ([iceberg] in --config, or STREAMSVC_ICEBERG_*)")
        plan.sinks = _plan_sinks(admin, app, inputs, iceberg_mode, catalog)
    return plan


def _plan_sinks(
    admin: AdminClient, app: App, inputs: GroupPlan, mode: Mode, catalog: Catalog
) -> list[SinkResetPlan]:
    starts = log_starts(admin, inputs.offsets)
    full_replay = all(o == starts[tp] for tp, o in inputs.offsets.items())
    plans = []
    for sink in app.sinks:
        if sink.relation == "input":
            target = {p: o for (t, p), o in inputs.offsets.items() if t == sink.topic}
            plans.append(plan_sink_reset(catalog, sink, mode, target, None))
            continue
        if not full_replay:
            raise ConfigError(
                f"Iceberg sink {sink.spec.name!r} reads {sink.topic!r}, an output of the topology: its rows "
                "can only be reset for a full replay (every input from its earliest offset: --to-earliest); "
                "reset it separately, or leave it out (--sink)"
            )
        # The application stopped: no open transaction, the LSO is the end of what it wrote.
        output_end = end_offsets(admin, sink.topic, read_committed=True)
        plans.append(plan_sink_reset(catalog, sink, mode, None, output_end))
    return plans


def execute_reset_app(admin: AdminClient, plan: ResetAppPlan, catalog: Catalog | None, say: Say) -> None:
    """Apply `plan`: sinks' tables first, then internal topics, input offsets, local state, and the
    sinks' Kafka groups (informational positions). Safe to re-run after a failure."""
    app = plan.app
    require_inactive(admin, app.group)
    for sink_plan in plan.sinks:
        assert catalog is not None
        say(f"resetting Iceberg table {sink_plan.sink.spec.table}")
        apply_sink_reset(catalog, sink_plan)
    if plan.internal_topics:
        say(f"{plan.internal_mode} internal topics {plan.internal_topics}")
        if plan.internal_mode == "delete":
            delete_and_wait(admin, plan.internal_topics)
        else:
            truncate_topics(admin, plan.internal_topics, set(app.changelogs))
    if plan.inputs.offsets:
        say(f"resetting offsets of {app.group} on {sorted({t for t, _ in plan.inputs.offsets})}")
        apply(admin, plan.inputs)
    if plan.repartition_ends:
        apply(admin, GroupPlan(app.group, plan.inputs.state, plan.repartition_ends))
    for path in plan.state_dirs:
        say(f"deleting local state {path}")
        shutil.rmtree(path, ignore_errors=True)
    for sink_plan in plan.sinks:
        if sink_plan.table_exists:
            ref = sink_plan.sink
            starts = log_starts(
                admin, [(ref.topic, p) for p in range(partition_counts(admin, [ref.topic])[ref.topic])]
            )
            offsets = {(t, p): sink_plan.resumes_at.get(p, start) for (t, p), start in starts.items()}
            apply(admin, GroupPlan(ref.group, "Empty", offsets))  # for lag monitoring only


def delete_and_wait(admin: AdminClient, topics: list[str], timeout: float = 120.0) -> None:
    """Delete `topics` and wait until the cluster no longer lists them (so they can be recreated)."""
    delete_topics(admin, topics)
    deadline = time.monotonic() + timeout
    while set(topics) & set(admin.list_topics(timeout=30).topics):
        if time.monotonic() > deadline:
            raise StreamsvcError(f"topics {topics} were still listed {timeout:.0f}s after deletion")
        time.sleep(0.2)


def truncate_topics(admin: AdminClient, topics: list[str], compacted: set[str]) -> None:
    """Empty `topics` in place: DeleteRecords up to the end, or (compacted topics, where Kafka refuses
    DeleteRecords) delete and recreate with the same partitions and topic settings."""
    counts = partition_counts(admin, topics)
    recreate = [t for t in topics if t in compacted]
    configs = {t: topic_overrides(admin, t) for t in recreate}
    delete_and_wait(admin, recreate)
    for topic in recreate:
        ensure_topics(admin, {topic: counts[topic]}, configs[topic])
    rest = [TopicPartition(t, p, -1) for t in topics if t not in compacted for p in range(counts.get(t, 0))]
    if rest:
        for tp, fut in admin.delete_records(rest).items():
            try:
                fut.result(60)
            except Exception as exc:
                raise StreamsvcError(f"cannot truncate {tp.topic}:{tp.partition}: {exc}") from exc


def topic_overrides(admin: AdminClient, topic: str) -> dict[str, str]:
    """The topic's settings that differ from the broker's defaults."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(30)
    return {name: e.value for name, e in entries.items() if not e.is_default and e.value is not None}
