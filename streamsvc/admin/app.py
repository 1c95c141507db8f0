"""The topics, groups and state of one application: a topology (plus its Iceberg sinks) under settings.

Compiled with the runtime's own `Processor`, so the names are exactly the ones a worker uses: sources,
sinks, `<topic>.dlq`, changelogs (`streamsvc.state.changelog.changelog_topic`), and the repartition
topics `<app_id>-<name>-repartition`, found among the existing topics by that pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from streamsvc.config import Settings
from streamsvc.errors import ConfigError
from streamsvc.runtime.internal_topics import agent_group_id
from streamsvc.runtime.processor import Processor
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from streamsvc.topology.model import Topology

Role = Literal["input", "global-input", "output", "dlq", "changelog", "repartition", "sink-dlq"]
Relation = Literal["input", "output"]


def repartition_pattern(app_id: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(app_id)}-.+-repartition$")


@dataclass(frozen=True)
class SinkRef:
    """An Iceberg sink of the application: its spec, Kafka group, topic and where that topic sits."""

    spec: IcebergSinkSpec
    group: str
    topic: str
    dlq_topic: str
    relation: Relation  # "input": it reads a topic the topology reads; "output": one the topology writes


@dataclass
class App:
    """Everything `reset-app` and `topics` need to know about one application."""

    app_id: str
    group: str
    agent: str
    inputs: list[str]
    global_inputs: list[str]
    outputs: list[str]
    dlqs: list[str]
    changelogs: list[str]
    repartitions: list[str]
    sinks: list[SinkRef] = field(default_factory=list)

    def roles(self) -> dict[str, Role]:
        """Topic -> role, for every topic the application (and its sinks) reads or writes."""
        roles: dict[str, Role] = {}
        for role, topics in (
            ("input", self.inputs),
            ("global-input", self.global_inputs),
            ("output", self.outputs),
            ("dlq", self.dlqs),
            ("changelog", self.changelogs),
            ("repartition", self.repartitions),
            ("sink-dlq", [s.dlq_topic for s in self.sinks]),
        ):
            for topic in topics:
                roles.setdefault(topic, role)  # type: ignore[arg-type]
        return roles

    def state_dirs(self, settings: Settings) -> list[Path]:
        """Local state of this topology on this machine, for every instance id found."""
        base = settings.effective_state_dir / self.app_id
        return sorted(p for p in base.glob(f"*/{self.agent}") if p.is_dir()) if base.is_dir() else []


def load_app(
    topology: Topology,
    settings: Settings,
    existing_topics: Iterable[str],
    sinks: Sequence[IcebergSinkSpec] = (),
) -> App:
    """Compile `topology` against `settings` and place each sink spec relative to it."""
    processor = Processor(topology, settings)
    pattern = repartition_pattern(settings.app_id)
    repartitions = sorted(t for t in existing_topics if pattern.match(t))
    sources = [t for t in processor.source_topics if t not in repartitions]
    outputs = sorted({s.topic for s in processor.sinks} - set(repartitions))
    app = App(
        app_id=settings.app_id,
        group=agent_group_id(topology, settings),
        agent=topology.name,
        inputs=sources,
        global_inputs=sorted({g.topic for g in processor.global_tables.values()}),
        outputs=outputs,
        dlqs=sorted({s.dlq_topic for s in processor.sources.values()}),
        changelogs=sorted({s.changelog_topic for s in processor.stores}),
        repartitions=repartitions,
    )
    for spec in sinks:
        topic = settings.topic(spec.source)
        if topic in app.inputs:
            relation: Relation = "input"
        elif topic in app.outputs:
            relation = "output"
        else:
            raise ConfigError(
                f"Iceberg sink {spec.name!r} reads {topic!r}, which topology {topology.name!r} neither reads "
                f"nor writes (inputs {app.inputs}, outputs {app.outputs})"
            )
        group = f"{settings.effective_group_id}.{spec.name}"
        app.sinks.append(SinkRef(spec, group, topic, f"{topic}{settings.dlq_suffix}", relation))
    return app
