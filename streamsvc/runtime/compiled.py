"""The compiled form of a topology: concrete topics, sinks, sources and state stores, and the
outcome counts of processing. Built by `Processor`; read by the agent (stores, changelogs, restore)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamsvc.dlq.records import OutputRecord, Stage
from streamsvc.joins.interval import IntervalJoin
from streamsvc.joins.table import CdcTable, GlobalTable
from streamsvc.runtime.repartition import KEY_TYPE_HEADER, encode_typed_key
from streamsvc.serde.base import Serde, SerdeContext
from streamsvc.topology.model import Source, WindowOp
from streamsvc.windows.operator import WindowedAggregation

Emit = Callable[[Any, Any, list[tuple[int, Any, Any]]], None]
ABSORBED = -1  # pseudo sink id: the record went into window state instead of a sink


@dataclass
class CompiledWindow:
    """A window node: its operator (per-partition state), changelog topic, and the rows of this batch."""

    op: WindowOp
    engine: WindowedAggregation
    source_topic: str
    changelog_topic: str
    dlq_topic: str
    forward: Emit
    rows: list[tuple[int, int, Any, int, Any]] = field(default_factory=list)  # (msg#, partition, k, t, v)
    persistent: bool = False  # committed state in a local RocksDB with a checkpoint

    @property
    def resident(self) -> bool:
        """The engine works on its local store (nothing to load into memory on restore)."""
        return self.engine.resident

    @property
    def name(self) -> str:
        return self.op.name


@dataclass
class CompiledTable:
    """A table from a CDC topic: latest row per key, per partition, kept in a changelog topic."""

    name: str
    engine: CdcTable
    source_topic: str
    changelog_topic: str
    persistent: bool = False

    @property
    def resident(self) -> bool:
        return self.persistent


@dataclass
class CompiledGlobalTable:
    """A replicated table; `streamsvc.runtime.global_tables.GlobalTableReader` keeps it current."""

    name: str
    engine: GlobalTable
    topic: str
    value_serde: Serde


@dataclass
class CompiledIntervalJoin:
    """An interval join: its engine (per-partition buffers of both sides) and this batch's rows."""

    name: str
    engine: IntervalJoin[Any, Any, Any]
    source_topic: str  # the left input; its offsets tag the changelog
    changelog_topic: str
    dlq_topic: str
    forward: Emit = field(default=lambda k, v, out: None)
    right_topic: str = ""
    rows: list[tuple[int, int, int, Any, int, Any]] = field(default_factory=list)  # msg#, part, side, k, t, v
    persistent: bool = False
    resident = False


CompiledStore = CompiledWindow | CompiledTable | CompiledIntervalJoin


@dataclass(frozen=True)
class CompiledSink:
    topic: str
    key_serde: Serde
    value_serde: Serde
    key_ctx: SerdeContext
    value_ctx: SerdeContext
    event_time: bool = False  # stamp outputs with the record's event time (repartition topics)
    typed_keys: bool = False  # keys keep their type through a `streamsvc.key.type` header

    def record(self, key: Any, value: Any, timestamp_ms: int) -> OutputRecord:
        """The output record of (key, value), serialized (raises on a key or value it cannot write)."""
        vb = self.value_serde.serialize(value, self.value_ctx)
        if self.typed_keys:
            kb, tag = encode_typed_key(key)
            return OutputRecord(self.topic, kb, vb, timestamp_ms, [(KEY_TYPE_HEADER, tag)])
        return OutputRecord(self.topic, self.key_serde.serialize(key, self.key_ctx), vb, timestamp_ms)


@dataclass(frozen=True)
class CompiledRepartition:
    """An internal repartition topic: written by the sub-topology of `upstream_topic`, read back as a
    source. `partitions` None: as many as `upstream_topic`."""

    name: str
    topic: str
    upstream_topic: str
    partitions: int | None


@dataclass(frozen=True)
class CompiledSource:
    topic: str
    dlq_topic: str
    source: Source
    key_ctx: SerdeContext
    value_ctx: SerdeContext
    emit: Emit
    typed_keys: bool = False  # a repartition topic whose keys carry their type in a header


@dataclass
class Tally:
    """Per-source-topic outcome counts of one batch or one transaction."""

    consumed: Counter[str] = field(default_factory=Counter)
    emitted: Counter[str] = field(default_factory=Counter)
    filtered: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[tuple[str, Stage]] = field(default_factory=Counter)
    late: Counter[str] = field(default_factory=Counter)
    produced: Counter[str] = field(default_factory=Counter)
    error_classes: Counter[tuple[str, Stage, str]] = field(default_factory=Counter)  # dead, by class

    def add(self, other: Tally) -> None:
        self.consumed.update(other.consumed)
        self.emitted.update(other.emitted)
        self.filtered.update(other.filtered)
        self.dead_lettered.update(other.dead_lettered)
        self.late.update(other.late)
        self.produced.update(other.produced)
        self.error_classes.update(other.error_classes)

    def clear(self) -> None:
        for c in (self.consumed, self.emitted, self.filtered, self.dead_lettered, self.late, self.produced):
            c.clear()
        self.error_classes.clear()

    def balanced(self) -> bool:
        """consumed = emitted + filtered + dead-lettered + late, per source topic."""
        dead: Counter[str] = Counter()
        for (topic, _), n in self.dead_lettered.items():
            dead[topic] += n
        return all(
            self.consumed[t] == self.emitted[t] + self.filtered[t] + dead[t] + self.late[t]
            for t in set(self.consumed) | set(self.emitted) | set(self.filtered) | set(dead) | set(self.late)
        )


@dataclass
class BatchResult:
    outputs: list[OutputRecord]
    tally: Tally
