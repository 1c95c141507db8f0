"""The topology description: sources, operators and sinks as plain data.

A `Topology` says *what* to compute; `streamsvc.runtime` decides *how* (consumers, transactions,
batching). Nothing here talks to Kafka. Topic names are logical: the runtime maps them to real topics
through `Settings.topics`, so the same topology runs against per-test or per-environment topics.

    topology = Topology("orders-clean")
    orders = topology.source("orders", value_serde=JsonSerde(), expectations=[not_null("id")])
    orders.filter(lambda o: o["qty"] > 0).to("orders_clean", value_serde=JsonSerde())

Operator functions are checked against the arguments they will get when the topology is built
(`select_key(fn)` calls `fn(key, value)`, `map(fn)` calls `fn(value)`, ...; see docs/topology.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from streamsvc.errors import TopologyError
from streamsvc.serde.base import Serde
from streamsvc.serde.raw import BytesSerde
from streamsvc.validation.expectations import Expectation
from streamsvc.windows.aggregations import Aggregation
from streamsvc.windows.spec import Emit, WindowSpec

KeyFormat = Literal["kafka", "json", "legacy"]
"""How window results are keyed: `kafka` (Kafka Streams' windowed-key layout), `json`, or `legacy`."""
KEY_FORMATS: tuple[KeyFormat, ...] = ("kafka", "json", "legacy")
STORES = ("memory", "rocksdb", "disk")
"""Where operator state lives: in memory, or in RocksDB under `Settings.state_dir` with a local
checkpoint, so a restart restores only the changelog's tail ("disk" is an alias of "rocksdb")."""


def _check_store(store: str) -> str:
    if store not in STORES:
        raise TopologyError(f"store must be one of {STORES}, got {store!r}")
    return "rocksdb" if store == "disk" else store


def _arity(what: str, fn: Any, takes: str) -> Any:
    """Return `fn` if it can be called with the arguments `takes` names (e.g. "(key, value)"); raise a
    TopologyError at build time otherwise, rather than dead-lettering every record at run time."""
    if not callable(fn):
        raise TopologyError(f"{what} must be a function {takes}, got {type(fn).__name__}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: let them through
        return fn
    n = takes.count(",") + 1
    try:
        signature.bind(*range(n))
    except TypeError:
        name = getattr(fn, "__name__", type(fn).__name__)
        raise TopologyError(
            f"{what} is called as fn{takes}, but {name}{signature} cannot take {n} positional "
            f"argument{'s' if n > 1 else ''}"
        ) from None
    return fn


EventTimeExtractor = Callable[[Any, int], int]
"""(decoded value, Kafka timestamp in ms) -> event time in ms."""


def kafka_timestamp(value: Any, timestamp_ms: int) -> int:
    """The default event-time extractor: the record's Kafka timestamp."""
    return timestamp_ms


@dataclass(frozen=True)
class MapOp:
    fn: Callable[[Any], Any]


@dataclass(frozen=True)
class SelectKeyOp:
    fn: Callable[[Any, Any], Any]


@dataclass(frozen=True)
class FilterOp:
    predicate: Callable[[Any], bool]


@dataclass(frozen=True)
class FlatMapOp:
    fn: Callable[[Any], Iterable[Any]]


@dataclass(frozen=True)
class PeekOp:
    fn: Callable[[Any, Any], None]


@dataclass(frozen=True)
class BranchOp:
    """First matching predicate wins; records matching none go to `default` or are filtered."""

    predicates: tuple[tuple[str, Callable[[Any], bool]], ...]
    default: str | None


@dataclass(frozen=True)
class SinkSpec:
    topic: str
    key_serde: Serde | None  # None: the default for the keys reaching it (bytes; windowed after a window)
    value_serde: Serde


@dataclass(frozen=True)
class RepartitionOp:
    """Write the stream to the internal topic `<app_id>-<name>-repartition` (partitioned by the current
    key) and read it back: downstream operators run as their own sub-topology on the topic's partitions
    (see `Stream.repartition`)."""

    name: str
    partitions: int | None
    key_serde: Serde | None  # None: bytes, str, int keep their type (a header carries it)
    value_serde: Serde


@dataclass(frozen=True)
class WindowOp:
    """A windowed aggregation per key; downstream records are its results (see `Stream.window`)."""

    name: str
    window: WindowSpec
    aggregation: Aggregation
    emit: Emit
    value: Callable[[Any], Any] | None
    allowed_lateness_ms: int
    key_format: KeyFormat = "kafka"
    store: str = "memory"


@dataclass(frozen=True)
class TableRef:
    """A table declared with `Topology.table`; pass it to `Stream.join`."""

    name: str
    topic: str
    replicated: bool = False  # a global table: every instance holds all partitions
    store: str = "memory"  # "memory" or "rocksdb" (alias "disk"; under Settings.state_dir)


@dataclass(frozen=True)
class GlobalTableSpec:
    """A replicated table: read in full by every instance, outside the consumer group."""

    ref: TableRef
    value_serde: Serde


@dataclass(frozen=True)
class JoinTableOp:
    """Enrich each record with the table's current row for the record's key (bytes)."""

    table: TableRef
    combine: Callable[[Any, dict[str, Any] | None], Any]
    how: str


@dataclass(frozen=True, eq=False)
class IntervalJoinOp:
    """Stream-stream join: the left record at t meets right records of its key with
    t - before_ms <= t' <= t + after_ms (see `Stream.interval_join`)."""

    name: str
    before_ms: int
    after_ms: int
    combine: Callable[[Any, Any], Any]
    how: str
    grace_ms: int
    store: str = "memory"


@dataclass(frozen=True)
class IntervalJoinRightOp:
    """Marks the right input of an interval join (its records feed the join's state)."""

    join: IntervalJoinOp


Operator = (
    MapOp
    | SelectKeyOp
    | FilterOp
    | FlatMapOp
    | PeekOp
    | BranchOp
    | WindowOp
    | JoinTableOp
    | IntervalJoinOp
    | IntervalJoinRightOp
    | RepartitionOp
)

_REKEYING = (SelectKeyOp,)


@dataclass(eq=False)
class Stream:
    """A node in the topology tree. Each method returns the downstream node, so calls chain."""

    topology: Topology
    op: Operator | None = None
    branch_name: str | None = None
    children: list[Stream] = field(default_factory=list)
    sinks: list[SinkSpec] = field(default_factory=list)
    rekeyed: bool = False
    """The key was changed (`select_key`) since the source or the last repartition: a stateful operator
    downstream repartitions first."""

    def _then(self, op: Operator | None, branch_name: str | None = None) -> Stream:
        rekeyed = isinstance(op, _REKEYING) or (self.rekeyed and not isinstance(op, RepartitionOp))
        child = Stream(self.topology, op, branch_name, rekeyed=rekeyed)
        self.children.append(child)
        return child

    def _keyed(self, name: str) -> Stream:
        """This stream, or its automatic repartition when the key was changed upstream."""
        if not self.rekeyed:
            return self
        taken = self.topology.repartition_names
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}-{n}"
        return self.repartition(unique)

    def map(self, fn: Callable[[Any], Any]) -> Stream:
        """Replace each value by `fn(value)`; the key is kept."""
        return self._then(MapOp(_arity("map()", fn, "(value)")))

    def select_key(self, fn: Callable[[Any, Any], Any]) -> Stream:
        """Re-key each record with `fn(key, value)`. A stateful operator after it (window, join)
        repartitions first, through `<app_id>-<operator name>-repartition` (see `repartition`)."""
        return self._then(SelectKeyOp(_arity("select_key()", fn, "(key, value)")))

    def group_by(
        self,
        key: Callable[[Any, Any], Any] | str,
        name: str,
        partitions: int | None = None,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
    ) -> Stream:
        """Re-key by `key(key, value)` (or by the value's field `key`) and repartition (Kafka Streams'
        `groupBy`): records with one key meet in one partition of `<app_id>-<name>-repartition`, so a
        window or join downstream sees every record of a key. A record whose key cannot be computed
        or encoded (the function raises, the field is missing, the key is None) goes to the DLQ."""
        fn = _field_key(key) if isinstance(key, str) else key
        return self.select_key(fn).repartition(name, partitions, key_serde, value_serde)

    def repartition(
        self,
        name: str,
        partitions: int | None = None,
        key_serde: Serde | None = None,
        value_serde: Serde | None = None,
    ) -> Stream:
        """Write every record to the internal topic `<app_id>-<name>-repartition`, partitioned by its
        key, in the same transaction as the input offsets, and go on from the records read back: the
        operators downstream run as their own sub-topology. The topic is created by the runtime (and
        `streamsvc topics create`) with `partitions`, default the source topic's count. Records keep
        their event time as their Kafka timestamp. `value_serde` defaults to JSON; `key_serde` to
        bytes/str/int keys that keep their type. A None key cannot be partitioned: it goes to the DLQ."""
        if name in self.topology.repartition_names:
            raise TopologyError(f"repartition name {name!r} is used twice in {self.topology.name!r}")
        if partitions is not None and (isinstance(partitions, bool) or partitions < 1):
            raise TopologyError(f"repartition partitions must be a positive int, got {partitions!r}")
        from streamsvc.serde.json import JsonSerde

        self.topology.repartition_names.append(name)
        return self._then(RepartitionOp(name, partitions, key_serde, value_serde or JsonSerde()))

    def filter(self, predicate: Callable[[Any], bool]) -> Stream:
        """Keep the records for which `predicate(value)` is true; the others count as filtered."""
        return self._then(FilterOp(_arity("filter()", predicate, "(value)")))

    def flat_map(self, fn: Callable[[Any], Iterable[Any]]) -> Stream:
        """Replace each value by zero or more values."""
        return self._then(FlatMapOp(_arity("flat_map()", fn, "(value)")))

    def peek(self, fn: Callable[[Any, Any], None]) -> Stream:
        """Call `fn(key, value)` for its side effect and pass the record on unchanged."""
        return self._then(PeekOp(_arity("peek()", fn, "(key, value)")))

    def branch(self, default: str | None = None, **predicates: Callable[[Any], bool]) -> dict[str, Stream]:
        """Route each record to the first branch whose predicate holds (Kafka Streams' `split`).

        Returns one stream per branch name; with `default="name"` unmatched records go there,
        otherwise they count as filtered.
        """
        if not predicates:
            raise TopologyError("branch() needs at least one named predicate")
        for branch_name, predicate in predicates.items():
            _arity(f"branch() predicate {branch_name!r}", predicate, "(value)")
        names = [*predicates, *([default] if default else [])]
        if len(set(names)) != len(names):
            raise TopologyError(f"branch names must be unique, got {names}")
        node = self._then(BranchOp(tuple(predicates.items()), default))
        return {name: node._then(None, branch_name=name) for name in names}

    def window(
        self,
        name: str,
        window: WindowSpec,
        aggregation: Aggregation,
        emit: Emit = "final",
        value: Callable[[Any], Any] | None = None,
        allowed_lateness_ms: int = 0,
        key_format: KeyFormat = "kafka",
        store: str = "memory",
    ) -> Stream:
        """Aggregate per key in event-time windows (`streamsvc.windows`), state kept in a changelog topic.

        `value(v)` picks what to aggregate (default: the value; `Count` needs nothing). Downstream
        records are keyed by `Windowed(key, start_ms, end_ms)` with the aggregate as value; a sink
        without a key serde writes the key in `key_format`: `"kafka"` (Kafka Streams' windowed-key
        layout, `streamsvc.serde.windowed`) or `"json"`. `"legacy"` keeps the record key and the value
        `{"start", "end", "value"}`. Update-mode retractions are tombstones on the retracted window's
        key. Records whose windows are all closed are routed to the DLQ with stage `late`. After
        `select_key` the stream is repartitioned first (`<app_id>-<name>-repartition`).
        `store="rocksdb"`: tumbling and hopping windows keep their state in RocksDB (memory holds only
        the batch), the others in memory with a RocksDB copy; either way restarts read only the
        changelog's tail.
        """
        if any(n == name for n in self.topology.store_names):
            raise TopologyError(f"store name {name!r} is used twice in {self.topology.name!r}")
        if key_format not in KEY_FORMATS:
            raise TopologyError(f"key_format must be one of {KEY_FORMATS}, got {key_format!r}")
        if emit not in ("final", "update"):
            raise TopologyError(f"emit must be 'final' or 'update', got {emit!r}")
        if value is not None:
            _arity("window(value=...)", value, "(value)")
        node = self._keyed(name)
        self.topology.store_names.append(name)
        op = WindowOp(
            name, window, aggregation, emit, value, allowed_lateness_ms, key_format, _check_store(store)
        )
        return node._then(op)

    def join(
        self, table: TableRef, combine: Callable[[Any, dict[str, Any] | None], Any], how: str = "inner"
    ) -> Stream:
        """Stream-table join on the record key (bytes, equal to the table topic's Kafka key): each
        record becomes `combine(value, row)` with the table's row as of the record's arrival (like
        Kafka Streams' KStream-KTable join). `how="left"` keeps records without a row (`row=None`);
        `"inner"` counts them as filtered. The stream and table topics must be co-partitioned."""
        if how not in ("inner", "left"):
            raise TopologyError(f"join how must be 'inner' or 'left', got {how!r}")
        _arity("join() combine", combine, "(value, row)")
        return self._keyed(f"{table.name}-join")._then(JoinTableOp(table, combine, how))

    def interval_join(
        self,
        other: Stream,
        name: str,
        before_ms: int,
        after_ms: int,
        combine: Callable[[Any, Any], Any],
        how: str = "inner",
        grace_ms: int = 0,
        store: str = "memory",
    ) -> Stream:
        """Join this (left) stream with `other` (right) on the key (bytes) in event time: a left record
        at t meets every right record with t - before_ms <= t' <= t + after_ms, giving
        `combine(left, right)`; with `how="left"` an unmatched left record gives `combine(left, None)`
        once its interval has closed. Watermark per partition = max event time of either side - grace;
        records below it are late (DLQ stage `late`). Both topics must be co-partitioned; their records
        are processed in timestamp order (`max_task_idle_ms`). `store="rocksdb"` keeps a RocksDB copy
        of the buffers so that restarts read only the changelog's tail."""
        if how not in ("inner", "left"):
            raise TopologyError(f"interval join how must be 'inner' or 'left', got {how!r}")
        _arity("interval_join() combine", combine, "(left, right)")
        if name in self.topology.store_names:
            raise TopologyError(f"store name {name!r} is used twice in {self.topology.name!r}")
        self.topology.store_names.append(name)
        op = IntervalJoinOp(name, before_ms, after_ms, combine, how, grace_ms, _check_store(store))
        other._keyed(f"{name}-right")._then(IntervalJoinRightOp(op))
        return self._keyed(f"{name}-left")._then(op)

    def to(self, topic: str, value_serde: Serde, key_serde: Serde | None = None) -> Stream:
        """Write every record reaching this node to `topic` (a logical name)."""
        self.sinks.append(SinkSpec(topic, key_serde, value_serde))
        self.topology.sink_topics.add(topic)
        return self


def _field_key(name: str) -> Callable[[Any, Any], Any]:
    def key(_key: Any, value: Any) -> Any:
        return value[name]

    return key


@dataclass(eq=False)
class Source(Stream):
    """A source topic with its serdes, expectations and event-time extractor."""

    topic: str = ""
    key_serde: Serde = field(default_factory=BytesSerde)
    value_serde: Serde = field(default_factory=BytesSerde)
    expectations: Sequence[Expectation] = ()
    event_time: EventTimeExtractor = kafka_timestamp
    dlq_topic: str | None = None
    table: TableRef | None = None  # set for the changelog source of a table


@dataclass(eq=False)
class Topology:
    """A named set of sources, each the root of an operator tree ending in sinks."""

    name: str
    sources: list[Source] = field(default_factory=list)
    sink_topics: set[str] = field(default_factory=set)
    store_names: list[str] = field(default_factory=list)
    global_tables: list[GlobalTableSpec] = field(default_factory=list)
    repartition_names: list[str] = field(default_factory=list)

    def source(
        self,
        topic: str,
        value_serde: Serde,
        key_serde: Serde | None = None,
        expectations: Sequence[Expectation] = (),
        event_time: EventTimeExtractor = kafka_timestamp,
        dlq_topic: str | None = None,
    ) -> Source:
        """Declare a source topic (logical name). `dlq_topic` defaults to `<real topic>.dlq`."""
        if any(s.topic == topic for s in self.sources):
            raise TopologyError(f"topic {topic!r} is already a source of topology {self.name!r}")
        _arity("source(event_time=...)", event_time, "(value, kafka_timestamp_ms)")
        src = Source(
            topology=self,
            topic=topic,
            key_serde=key_serde or BytesSerde(),
            value_serde=value_serde,
            expectations=tuple(expectations),
            event_time=event_time,
            dlq_topic=dlq_topic,
        )
        self.sources.append(src)
        return src

    def table(
        self, topic: str, value_serde: Serde | None = None, name: str | None = None, store: str = "memory"
    ) -> TableRef:
        """Declare a table from a Debezium CDC topic (logical name): the latest row per Kafka key;
        deletes and tombstones remove it. State is kept per partition with a changelog topic, in memory
        or, with `store="rocksdb"` (or `"disk"`), in RocksDB under `Settings.state_dir` with a local
        checkpoint (state larger than memory; restarts read only the changelog's tail)."""
        from streamsvc.serde.debezium import DebeziumSerde

        ref = TableRef(name or topic, topic, store=_check_store(store))
        if ref.name in self.store_names:
            raise TopologyError(f"store name {ref.name!r} is used twice in {self.name!r}")
        self.store_names.append(ref.name)
        src = self.source(topic, value_serde=value_serde or DebeziumSerde())
        src.table = ref
        return ref

    def global_table(self, topic: str, value_serde: Serde | None = None, name: str | None = None) -> TableRef:
        """Declare a replicated table from a Debezium CDC topic (logical name): every instance reads all
        of its partitions before processing and keeps following it, so streams joined with it need not
        be co-partitioned (Kafka Streams' GlobalKTable). The topic itself is the state's durable copy."""
        from streamsvc.serde.debezium import DebeziumSerde

        ref = TableRef(name or topic, topic, replicated=True)
        if ref.name in self.store_names:
            raise TopologyError(f"store name {ref.name!r} is used twice in {self.name!r}")
        self.store_names.append(ref.name)
        self.global_tables.append(GlobalTableSpec(ref, value_serde or DebeziumSerde()))
        return ref

    def validate(self) -> None:
        """Raise TopologyError when the description cannot run."""
        if not self.sources:
            raise TopologyError(f"topology {self.name!r} has no source; declare one with .source(...)")
        source_topics = {s.topic for s in self.sources}
        loops = source_topics & self.sink_topics
        if loops:
            raise TopologyError(f"topology {self.name!r} writes to its own source topics {sorted(loops)}")
