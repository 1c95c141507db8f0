"""Compiling a topology against concrete topic names (see `TopologyCompiler`).

Every source -- a declared topic or an internal repartition topic -- gets an emit function that runs
its operator tree on one decoded record and appends `(sink id | ABSORBED, key, value)` to a list.
A `RepartitionOp` cuts a tree in two: the part above it ends in a sink to the repartition topic and
the part below is compiled as the tree of that topic, a sub-topology of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamsvc.config import Settings
from streamsvc.errors import TopologyError
from streamsvc.joins.interval import IntervalJoin
from streamsvc.joins.table import CdcTable, GlobalTable
from streamsvc.runtime.compiled import (
    ABSORBED,
    CompiledGlobalTable,
    CompiledIntervalJoin,
    CompiledRepartition,
    CompiledSink,
    CompiledSource,
    CompiledStore,
    CompiledTable,
    CompiledWindow,
    Emit,
)
from streamsvc.runtime.fastpath import plan_of
from streamsvc.runtime.repartition import RekeyError, repartition_topic
from streamsvc.serde.base import Serde, SerdeContext
from streamsvc.serde.raw import BytesSerde
from streamsvc.serde.windowed import SessionWindowedSerde, TimeWindowedSerde, WindowedJsonSerde
from streamsvc.state.changelog import changelog_topic
from streamsvc.state.local import LocalState, LocalStates
from streamsvc.state.store import KeyValueStore
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
    Source,
    Stream,
    TableRef,
    Topology,
    WindowOp,
)
from streamsvc.windows._codec import encode_key
from streamsvc.windows.operator import WindowedAggregation
from streamsvc.windows.spec import Hopping, Session, Sliding, Tumbling

_PLAIN_KEYS = frozenset({bytes, str, int, type(None)})
_BYTES = BytesSerde()
_WINDOWED_SERDES = (TimeWindowedSerde, SessionWindowedSerde, WindowedJsonSerde)


def sink_key_serde(given: Serde | None, default: Serde) -> Serde:
    """The key serde of a sink: its own, else `default`. After a window (`default` a windowed layout) a
    sink's own serde that cannot encode `Windowed` keys encodes the inner key of the layout, as Kafka
    Streams' `WindowedSerdes.timeWindowedSerdeFrom(inner)` does (the JSON layout has no inner serde)."""
    if given is None or isinstance(given, _WINDOWED_SERDES):
        return given or default
    if isinstance(default, TimeWindowedSerde):
        return TimeWindowedSerde(default.window_size_ms, inner=given)
    if isinstance(default, SessionWindowedSerde):
        return SessionWindowedSerde(default.gap_ms, inner=given)
    return default if isinstance(default, WindowedJsonSerde) else given


def _window_key_serde(op: WindowOp) -> Serde:
    """The default key serde of sinks after a window: its windowed-key layout."""
    if op.key_format == "legacy":
        return _BYTES
    if op.key_format == "json":
        return WindowedJsonSerde()
    w = op.window
    if isinstance(w, Session):
        return SessionWindowedSerde(w.gap_ms)
    if isinstance(w, Sliding):
        return TimeWindowedSerde(w.size_ms + 1)
    assert isinstance(w, Tumbling | Hopping)
    return TimeWindowedSerde(w.size_ms)


class TopologyCompiler:
    """A topology compiled against concrete topic names: sources (repartition topics included), sinks,
    stores, and the emit function of every source's operator tree. `Processor` executes it."""

    def __init__(self, topology: Topology, settings: Settings) -> None:
        topology.validate()
        self.app = settings.app_id
        self.agent = topology.name
        self.sinks: list[CompiledSink] = []
        self.windows: list[CompiledWindow] = []
        self.tables: dict[str, CompiledTable] = {}
        self.interval_joins: dict[str, CompiledIntervalJoin] = {}
        self.global_tables = {
            spec.ref.name: CompiledGlobalTable(
                spec.ref.name, GlobalTable(spec.ref.name), settings.topic(spec.ref.topic), spec.value_serde
            )
            for spec in topology.global_tables
        }
        self.copartitioned: list[tuple[str, str]] = []  # (stream topic, table topic) pairs joined
        self._ctx = [0, 0, 0]  # message number, partition, event time of the record being processed
        self.sources: dict[str, CompiledSource] = {}
        self.repartitions: list[CompiledRepartition] = []
        self.settings = settings
        self.local_states: LocalStates | None = None
        self._node_sinks: dict[int, list[int]] = {}  # id(stream node) -> its sink ids
        for src in topology.sources:
            if src.table is not None:
                real = settings.topic(src.topic)
                self.tables[src.table.name] = CompiledTable(
                    src.table.name,
                    CdcTable(src.table.name, self._store_factory(settings, src.table)),
                    real,
                    changelog_topic(settings.app_id, self.agent, src.table.name),
                    persistent=src.table.store == "rocksdb",
                )
        for src in topology.sources:
            real = settings.topic(src.topic)
            dlq = settings.topic(src.dlq_topic) if src.dlq_topic else real + settings.dlq_suffix
            if real in self.sources:
                raise TopologyError(f"two sources of {topology.name!r} map to the same topic {real!r}")
            self.sources[real] = CompiledSource(
                topic=real,
                dlq_topic=dlq,
                source=src,
                key_ctx=SerdeContext(real, is_key=True),
                value_ctx=SerdeContext(real, is_key=False),
                emit=self._compile_table_source(src)
                if src.table
                else self._compile(src, settings, real, dlq, _BYTES),
            )

        for join in self.interval_joins.values():
            if not join.source_topic or not join.right_topic:
                raise TopologyError(f"interval join {join.name!r} lacks its left or right input")
            self.copartitioned.append((join.source_topic, join.right_topic))
        self.plans = {
            topic: plan
            for topic, src in self.sources.items()
            if (plan := plan_of(src, self.windows, self._node_sinks)) is not None
        }
        internal = {r.topic for r in self.repartitions}
        loops = (set(self.sources) - internal) & set(self.output_topics)
        if loops:
            raise TopologyError(f"{topology.name!r} would write to its source topics {sorted(loops)}")

    def _local(self, store: str) -> Callable[[int], LocalState]:
        """The local store of each partition of operator `store` (RocksDB with a checkpoint)."""
        if self.local_states is None:
            s = self.settings
            # The instance id keeps two workers on one host apart (and must be stable to reuse state).
            base = s.effective_state_dir / s.app_id / s.effective_instance_id / self.agent
            self.local_states = LocalStates(base)
        states = self.local_states
        return lambda partition: states.open(store, partition)

    def _store_factory(self, settings: Settings, table: TableRef) -> Callable[[int], KeyValueStore] | None:
        return self._local(table.name) if table.store == "rocksdb" else None

    @property
    def stores(self) -> list[CompiledStore]:
        """Every state store (windows and tables), for changelog writes, restore and revocation."""
        return [*self.windows, *self.tables.values(), *self.interval_joins.values()]

    @property
    def source_topics(self) -> list[str]:
        return list(self.sources)

    @property
    def output_topics(self) -> list[str]:
        """Sinks and dead-letter topics (repartition topics included)."""
        return sorted({s.topic for s in self.sinks} | {s.dlq_topic for s in self.sources.values()})

    @property
    def repartition_topics(self) -> list[str]:
        return [r.topic for r in self.repartitions]

    def serdes(self) -> list[Serde]:
        """Every serde in the topology (the runtime binds the schema registry to those needing one)."""
        found: list[Serde] = []
        for s in self.sources.values():
            found += [s.source.key_serde, s.source.value_serde]
        for sink in self.sinks:
            found += [sink.key_serde, sink.value_serde]
        wrapped = (TimeWindowedSerde, SessionWindowedSerde)
        return found + [w.inner for w in found if isinstance(w, wrapped) and w.inner is not None]

    def _compile(self, node: Stream, settings: Settings, source: str, dlq: str, keys: Serde) -> Emit:
        """`keys`: the key serde of sinks that name none (bytes; windowed keys after a window)."""
        op = node.op
        if isinstance(op, RepartitionOp):
            return self._compile_repartition(node, op, settings, source, dlq)
        if isinstance(op, WindowOp):
            keys = _window_key_serde(op)
        elif isinstance(op, SelectKeyOp):
            keys = _BYTES
        children = [
            self._compile(c, settings, source, dlq, keys) for c in node.children if c.branch_name is None
        ]
        sink_ids: list[int] = []
        for spec in node.sinks:
            real = settings.topic(spec.topic)
            self.sinks.append(
                CompiledSink(
                    real,
                    sink_key_serde(spec.key_serde, keys),
                    spec.value_serde,
                    SerdeContext(real, True),
                    SerdeContext(real),
                )
            )
            sink_ids.append(len(self.sinks) - 1)
        self._node_sinks[id(node)] = sink_ids

        def forward(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            for sid in sink_ids:
                out.append((sid, k, v))
            for child in children:
                child(k, v, out)

        if op is None:
            return forward
        if isinstance(op, MapOp):
            fn = op.fn
            return lambda k, v, out: forward(k, fn(v), out)
        if isinstance(op, SelectKeyOp):
            key_fn = op.fn
            return lambda k, v, out: forward(key_fn(k, v), v, out)
        if isinstance(op, FilterOp):
            pred = op.predicate

            def filtered(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
                if pred(v):
                    forward(k, v, out)

            return filtered
        if isinstance(op, FlatMapOp):
            many = op.fn

            def flat(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
                for item in many(v):
                    forward(k, item, out)

            return flat
        if isinstance(op, PeekOp):
            side = op.fn

            def peek(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
                side(k, v)
                forward(k, v, out)

            return peek
        if isinstance(op, BranchOp):
            return self._compile_branch(node, op, settings, source, dlq, keys)
        if isinstance(op, WindowOp):
            return self._compile_window(op, forward, settings, source, dlq)
        if isinstance(op, JoinTableOp):
            return self._compile_join(op, forward, source)
        if isinstance(op, IntervalJoinOp | IntervalJoinRightOp):
            return self._compile_interval_side(op, forward, settings, source, dlq)
        raise TopologyError(f"unknown operator {op!r}")

    def _compile_window(self, op: WindowOp, forward: Emit, settings: Settings, source: str, dlq: str) -> Emit:
        persistent = op.store == "rocksdb"
        engine = WindowedAggregation(
            op.window,
            op.aggregation,
            op.emit,
            allowed_lateness_ms=op.allowed_lateness_ms,
            store=self._local(op.name) if persistent else None,
        )
        topic = changelog_topic(settings.app_id, self.agent, op.name)
        window = CompiledWindow(op, engine, source, topic, dlq, forward, persistent=persistent)
        self.windows.append(window)
        rows, ctx, pick, check = window.rows, self._ctx, op.value, op.aggregation.check

        def absorb(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            # What would fail inside the engine fails here, on its own record, before any folding.
            if k.__class__ not in _PLAIN_KEYS:
                encode_key(k)
            value = v if pick is None else pick(v)
            check(value)
            rows.append((ctx[0], ctx[1], k, ctx[2], value))
            out.append((ABSORBED, None, None))

        return absorb

    def _compile_repartition(
        self, node: Stream, op: RepartitionOp, settings: Settings, upstream: str, dlq: str
    ) -> Emit:
        """A sink to the repartition topic, and the nodes below it compiled as a source of that topic
        (its records dead-letter to the upstream source's DLQ)."""
        topic = repartition_topic(settings.app_id, op.name)
        if topic in self.sources:
            raise TopologyError(f"repartition topic {topic!r} is read twice")
        key_serde = op.key_serde or _BYTES
        self.sinks.append(
            CompiledSink(
                topic,
                key_serde,
                op.value_serde,
                SerdeContext(topic, True),
                SerdeContext(topic),
                event_time=True,
                typed_keys=op.key_serde is None,
            )
        )
        sid = len(self.sinks) - 1
        self.repartitions.append(CompiledRepartition(op.name, topic, upstream, op.partitions))
        downstream = Source(
            topology=node.topology,
            children=node.children,
            sinks=node.sinks,
            topic=topic,
            key_serde=key_serde,
            value_serde=op.value_serde,
        )
        self.sources[topic] = CompiledSource(
            topic=topic,
            dlq_topic=dlq,
            source=downstream,
            key_ctx=SerdeContext(topic, is_key=True),
            value_ctx=SerdeContext(topic, is_key=False),
            emit=self._compile(downstream, settings, topic, dlq, _BYTES),
            typed_keys=op.key_serde is None,
        )

        def rekey(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            if k is None:
                raise RekeyError("the new key is None: a record without a key cannot be repartitioned")
            out.append((sid, k, v))

        return rekey

    def _compile_table_source(self, src: Source) -> Emit:
        assert src.table is not None
        table, ctx = self.tables[src.table.name].engine, self._ctx

        def apply(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            if not isinstance(k, bytes):
                raise TypeError(f"table {table.name!r} needs bytes keys (BytesSerde), got {type(k).__name__}")
            table.apply(ctx[1], k, v)
            out.append((ABSORBED, None, None))

        return apply

    def _compile_join(self, op: JoinTableOp, forward: Emit, source: str) -> Emit:
        table: CompiledTable | CompiledGlobalTable | None = self.tables.get(op.table.name)
        if table is None:
            table = self.global_tables.get(op.table.name)
        if table is None:
            raise TopologyError(f"join with table {op.table.name!r}, which is not declared in this topology")
        if isinstance(table, CompiledTable):
            self.copartitioned.append((source, table.source_topic))
        get, combine, left, ctx = table.engine.get, op.combine, op.how == "left", self._ctx

        def join(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            if not isinstance(k, bytes | None):
                raise TypeError(f"joining with table {table.name!r} needs bytes keys, got {type(k).__name__}")
            row = None if k is None else get(ctx[1], k)
            if row is not None or left:
                forward(k, combine(v, row), out)

        return join

    def _compile_interval_side(
        self,
        op: IntervalJoinOp | IntervalJoinRightOp,
        forward: Emit,
        settings: Settings,
        source: str,
        dlq: str,
    ) -> Emit:
        spec = op if isinstance(op, IntervalJoinOp) else op.join
        join = self.interval_joins.get(spec.name)
        if join is None:
            engine: IntervalJoin[Any, Any, Any] = IntervalJoin(
                spec.before_ms,
                spec.after_ms,
                "left" if spec.how == "left" else "inner",
                spec.combine,
                spec.grace_ms,
            )
            join = CompiledIntervalJoin(
                spec.name,
                engine,
                "",
                changelog_topic(settings.app_id, self.agent, spec.name),
                dlq,
                persistent=spec.store == "rocksdb",
            )
            self.interval_joins[spec.name] = join
        side = 0 if isinstance(op, IntervalJoinOp) else 1
        if side == 0:
            join.source_topic, join.dlq_topic, join.forward = source, dlq, forward
        else:
            join.right_topic = source
        rows, ctx = join.rows, self._ctx

        def absorb(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            if not isinstance(k, bytes | None):
                raise TypeError(f"interval join {spec.name!r} needs bytes keys, got {type(k).__name__}")
            rows.append((ctx[0], ctx[1], side, k, ctx[2], v))
            out.append((ABSORBED, None, None))

        return absorb

    def _compile_branch(
        self, node: Stream, op: BranchOp, settings: Settings, source: str, dlq: str, keys: Serde
    ) -> Emit:
        by_name = {
            c.branch_name: self._compile(c, settings, source, dlq, keys)
            for c in node.children
            if c.branch_name
        }
        routes = [(pred, by_name[name]) for name, pred in op.predicates]
        default = by_name[op.default] if op.default else None

        def branch(k: Any, v: Any, out: list[tuple[int, Any, Any]]) -> None:
            for pred, target in routes:
                if pred(v):
                    target(k, v, out)
                    return
            if default is not None:
                default(k, v, out)

        return branch
