"""The topology as a graph for the status page: sources -> operators -> sinks, with the DLQ, changelog
and repartition topics each agent writes. Built from the topology description (`streamsvc.topology`)
and the settings that map logical to real topic names; nothing here runs the topology."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamsvc.config import Settings
from streamsvc.state.changelog import changelog_topic
from streamsvc.topology.model import (
    BranchOp,
    FilterOp,
    FlatMapOp,
    IntervalJoinOp,
    IntervalJoinRightOp,
    JoinTableOp,
    MapOp,
    PeekOp,
    RepartitionOp,
    SelectKeyOp,
    Stream,
    Topology,
    WindowOp,
)

# Node kinds: topics the agent reads or writes, and the operators between them.
SOURCE, OPERATOR, SINK, DLQ, CHANGELOG, REPARTITION, TABLE, ICEBERG = (
    "source",
    "operator",
    "sink",
    "dlq",
    "changelog",
    "repartition",
    "table",
    "iceberg",
)


@dataclass
class Node:
    id: str
    kind: str
    label: str
    topic: str = ""  # the real topic name for topic nodes
    store: str = ""  # the state store an operator or changelog belongs to
    column: int = 0  # left-to-right position for the layout


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, label)

    def add(self, node: Node) -> Node:
        existing = self.nodes.get(node.id)
        if existing is not None:
            existing.column = max(existing.column, node.column)
            return existing
        self.nodes[node.id] = node
        return node

    def link(self, a: str, b: str, label: str = "") -> None:
        if (a, b, label) not in self.edges:
            self.edges.append((a, b, label))

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": [vars(n) for n in self.nodes.values()],
            "edges": [{"from": a, "to": b, "label": label} for a, b, label in self.edges],
        }


_SIMPLE = {MapOp: "map", FilterOp: "filter", FlatMapOp: "flat_map", PeekOp: "peek", SelectKeyOp: "select_key"}


def _describe(op: Any) -> tuple[str, str]:
    """(label, store name) of an operator."""
    if isinstance(op, WindowOp):
        return f"window {op.name} ({type(op.window).__name__}, {type(op.aggregation).__name__})", op.name
    if isinstance(op, JoinTableOp):
        return f"join {op.table.name} ({op.how})", ""
    if isinstance(op, IntervalJoinOp):
        return f"interval join {op.name} ({op.how})", op.name
    if isinstance(op, BranchOp):
        return "branch " + ", ".join(name for name, _ in op.predicates), ""
    if isinstance(op, RepartitionOp):
        return f"repartition {op.name}", ""
    label = _SIMPLE.get(type(op))
    if label is not None:
        fn = getattr(op, "fn", None) or getattr(op, "predicate", None)
        name = getattr(fn, "__name__", "")
        return (f"{label} {name}" if name and name != "<lambda>" else label), ""
    return type(op).__name__, str(getattr(op, "name", ""))


def topology_graph(topology: Topology, settings: Settings) -> Graph:
    """The graph of one topology, with real topic names (`Settings.topics`)."""
    from streamsvc.runtime.repartition import repartition_topic  # runtime imports this module

    graph = Graph()
    agent = topology.name
    interval_nodes: dict[int, str] = {}
    counter = [0]

    def store_changelog(store: str, op_id: str, column: int) -> None:
        topic = changelog_topic(settings.app_id, agent, store)
        graph.add(Node(f"changelog:{topic}", CHANGELOG, topic, topic, store, column))
        graph.link(op_id, f"changelog:{topic}", "state")

    def walk(stream: Stream, parent: str, column: int, label: str = "") -> None:
        op = stream.op
        here, col = parent, column
        if isinstance(op, IntervalJoinRightOp):
            here = interval_nodes.setdefault(id(op.join), f"op:{op.join.name}")
            text, store = _describe(op.join)
            graph.add(Node(here, OPERATOR, text, store=store, column=column))
            graph.link(parent, here, "right")
            return
        if op is not None:
            counter[0] += 1
            here = f"op:{counter[0]}"
            if isinstance(op, IntervalJoinOp):
                here = interval_nodes.setdefault(id(op), f"op:{op.name}")
            text, store = _describe(op)
            graph.add(Node(here, OPERATOR, text, store=store, column=column))
            graph.link(parent, here, label)
            col = column + 1
            if isinstance(op, WindowOp | IntervalJoinOp):
                store_changelog(store, here, col)
            if isinstance(op, JoinTableOp):
                table = op.table
                table_id = f"table:{settings.topic(table.topic)}"
                kind = "global table" if table.replicated else "table"
                real = settings.topic(table.topic)
                graph.add(Node(table_id, TABLE, f"{kind} {table.name}", real, table.name))
                graph.link(table_id, here, "lookup")
            repartition = (
                repartition_topic(settings.app_id, op.name) if isinstance(op, RepartitionOp) else None
            )
            if repartition:
                graph.add(Node(f"repartition:{repartition}", REPARTITION, repartition, repartition))
                graph.link(here, f"repartition:{repartition}")
        for spec in stream.sinks:
            topic = settings.topic(spec.topic)
            graph.add(Node(f"sink:{topic}", SINK, topic, topic, column=col))
            graph.link(here, f"sink:{topic}", label if here == parent else "")
        for child in stream.children:
            walk(child, here, col, child.branch_name or (label if here == parent else ""))

    for src in topology.sources:
        real = settings.topic(src.topic)
        dlq = settings.topic(src.dlq_topic) if src.dlq_topic else real + settings.dlq_suffix
        if src.table is not None:
            table_id = f"table:{real}"
            graph.add(Node(table_id, TABLE, f"table {src.table.name}", real, src.table.name))
            graph.add(Node(f"source:{real}", SOURCE, real, real))
            graph.link(f"source:{real}", table_id)
            store_changelog(src.table.name, table_id, 1)
        else:
            graph.add(Node(f"source:{real}", SOURCE, real, real))
            walk(src, f"source:{real}", 1)
        graph.add(Node(f"dlq:{dlq}", DLQ, dlq, dlq, column=1))
        graph.link(f"source:{real}", f"dlq:{dlq}", "dead letters")
    for spec in topology.global_tables:
        real = settings.topic(spec.ref.topic)
        graph.add(Node(f"source:{real}", SOURCE, real, real))
        graph.link(f"source:{real}", f"table:{real}", "replicated")
    _layout(graph)
    return graph


def sink_graph(source_topic: str, dlq_topic: str, table: str, silver_table: str | None, agent: str) -> Graph:
    """The graph of one Iceberg sink agent: topic -> sink -> table (-> silver), and its DLQ."""
    graph = Graph()
    graph.add(Node(f"source:{source_topic}", SOURCE, source_topic, source_topic))
    graph.add(Node(f"op:{agent}", OPERATOR, f"iceberg sink {agent}", column=1))
    graph.add(Node(f"iceberg:{table}", ICEBERG, table, store=table, column=2))
    graph.add(Node(f"dlq:{dlq_topic}", DLQ, dlq_topic, dlq_topic, column=1))
    graph.link(f"source:{source_topic}", f"op:{agent}")
    graph.link(f"op:{agent}", f"iceberg:{table}", "append")
    graph.link(f"op:{agent}", f"dlq:{dlq_topic}", "dead letters")
    if silver_table:
        graph.add(Node(f"iceberg:{silver_table}", ICEBERG, silver_table, store=silver_table, column=3))
        graph.link(f"iceberg:{table}", f"iceberg:{silver_table}", "merge")
    return graph


def _layout(graph: Graph) -> None:
    """Columns by longest path from a source, so every edge points rightwards (topics at the ends)."""
    for _ in range(len(graph.nodes)):
        moved = False
        for a, b, _label in graph.edges:
            want = graph.nodes[a].column + 1
            if graph.nodes[b].column < want and graph.nodes[b].kind != TABLE:
                graph.nodes[b].column = want
                moved = True
        if not moved:
            break
