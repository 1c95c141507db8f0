"""What the status page shows: the agents of this process, their topology graphs and live numbers.

Counts come from the Prometheus registry itself (so the page and `/metrics` cannot disagree); the few
things Prometheus does not keep (the last commits with their duration and size) are kept here.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from streamsvc.observability.graph import CHANGELOG, DLQ, ICEBERG, SINK, SOURCE, Graph

RECENT_COMMITS = 20


@dataclass
class AgentStatus:
    app: str
    agent: str
    kind: str  # "stream" or "iceberg"
    guarantee: str
    transactional_id: str
    graph: Graph
    commits: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_COMMITS))


class StatusBoard:
    """The agents registered in this process (latest registration of an (app, agent) wins)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self._agents: dict[tuple[str, str], AgentStatus] = {}
        self._lock = threading.Lock()

    def register(self, status: AgentStatus) -> AgentStatus:
        with self._lock:
            self._agents[(status.app, status.agent)] = status
        return status

    def agents(self, apps: Iterable[str] | None = None) -> list[AgentStatus]:
        wanted = set(apps) if apps is not None else None
        with self._lock:
            return [a for a in self._agents.values() if wanted is None or a.app in wanted]

    def committed(self, status: AgentStatus, seconds: float, records: int) -> None:
        with self._lock:
            status.commits.appendleft({"at": time.time(), "seconds": seconds, "records": records})

    def snapshot(self, apps: Iterable[str] | None = None) -> dict[str, Any]:
        """Everything the page renders, as JSON-ready data (also served at `/api/status`)."""
        samples = _samples(self.registry)
        agents = []
        for status in self.agents(apps):
            agents.append(_agent_snapshot(status, samples))
        return {"generated_at": time.time(), "agents": agents}


Sample = tuple[str, dict[str, str], float]


def _samples(registry: CollectorRegistry) -> list[Sample]:
    out: list[Sample] = []
    for family in registry.collect():
        if not family.name.startswith("streamsvc_"):
            continue
        for s in family.samples:
            out.append((s.name, s.labels, s.value))
    return out


def _agent_snapshot(status: AgentStatus, samples: list[Sample]) -> dict[str, Any]:
    key = (status.app, status.agent)
    mine = [(n, lb, v) for n, lb, v in samples if (lb.get("app"), lb.get("agent")) == key]

    def total(name: str, **match: str) -> float:
        return sum(v for n, lb, v in mine if n == name and all(lb.get(k) == x for k, x in match.items()))

    counts: dict[str, dict[str, float]] = {}
    for node in status.graph.nodes.values():
        if node.kind == SOURCE:
            t = node.topic
            counts[node.id] = {
                "consumed": total("streamsvc_records_consumed_total", topic=t),
                "emitted": total("streamsvc_records_emitted_total", topic=t),
                "filtered": total("streamsvc_records_filtered_total", topic=t),
                "dead_lettered": total("streamsvc_records_dead_lettered_total", topic=t),
                "late": total("streamsvc_records_late_total", topic=t),
                "lag": total("streamsvc_consumer_lag_records", topic=t),
            }
        elif node.kind in (SINK, DLQ):
            counts[node.id] = {"produced": total("streamsvc_records_produced_total", topic=node.topic)}
            if node.kind == DLQ and status.kind == ICEBERG:
                counts[node.id]["produced"] = total("streamsvc_records_dead_lettered_total")
        elif node.kind == CHANGELOG:
            counts[node.id] = {"restored": total("streamsvc_state_restored_records_total", store=node.store)}
        elif node.kind == ICEBERG:
            counts[node.id] = {
                "rows": total("streamsvc_iceberg_rows_written_total", table=node.store),
                "snapshots": total("streamsvc_iceberg_snapshots", table=node.store),
                "data_files": total("streamsvc_iceberg_data_files", table=node.store),
                "offset_lag": total("streamsvc_iceberg_offset_lag_records", table=node.store),
            }
    dlq: dict[tuple[str, str, str], float] = defaultdict(float)
    for n, lb, v in mine:
        if n == "streamsvc_records_dead_lettered_total":
            dlq[(lb["topic"], lb["stage"], lb["error_class"])] += v
        elif n == "streamsvc_records_late_total":
            dlq[(lb["topic"], "late", "streamsvc.errors.LateRecordError")] += v
    return {
        "app": status.app,
        "agent": status.agent,
        "kind": status.kind,
        "guarantee": status.guarantee,
        "transactional_id": status.transactional_id,
        "graph": status.graph.as_dict(),
        "counts": counts,
        "lag": sorted(
            (
                {"topic": lb["topic"], "partition": int(lb["partition"]), "lag": v}
                for n, lb, v in mine
                if n == "streamsvc_consumer_lag_records"
            ),
            key=lambda r: (r["topic"], r["partition"]),
        ),
        "watermarks": sorted(
            (
                {"partition": int(lb["partition"]), "watermark": v}
                for n, lb, v in mine
                if n == "streamsvc_watermark_timestamp_seconds"
            ),
            key=lambda r: r["partition"],
        ),
        "dlq": [
            {"topic": t, "stage": s, "error_class": c, "count": v}
            for (t, s, c), v in sorted(dlq.items())
            if v
        ],
        "transactions": {
            "committed": total("streamsvc_transactions_committed_total"),
            "aborted": total("streamsvc_transactions_aborted_total"),
            "consecutive_aborts": total("streamsvc_consecutive_aborts"),
        },
        "commits": list(status.commits),
    }


BOARD = StatusBoard()
