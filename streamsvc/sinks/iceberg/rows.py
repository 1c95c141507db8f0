"""Decoded records -> Arrow batches with the Kafka metadata columns.

Data columns come from the spec's fixed schema, or are inferred per batch and cast to the types already
known (from the table, or earlier batches), so a record whose value cannot take a column's type is
reported as a failure (dead-lettered) instead of breaking the whole batch.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from streamsvc.serde.debezium import ChangeRecord

TS = pa.timestamp("us", tz="UTC")
META_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_kafka_topic", pa.string(), nullable=False),
    pa.field("_kafka_partition", pa.int32(), nullable=False),
    pa.field("_kafka_offset", pa.int64(), nullable=False),
    pa.field("_kafka_timestamp", TS),
    pa.field("_ingested_at", TS, nullable=False),
)
CDC_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_cdc_op", pa.string(), nullable=False),
    pa.field("_cdc_ts_ms", pa.int64()),
    pa.field("_cdc_source_ts_ms", pa.int64()),
    pa.field("_cdc_position", pa.string()),
    pa.field("_kafka_key", pa.binary()),
)
META_NAMES = frozenset(f.name for f in META_FIELDS)
RESERVED = META_NAMES | {f.name for f in CDC_FIELDS}
_CONVERT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError)


@dataclass(slots=True)
class Meta:
    """Where one record came from."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None = None


def cdc_row(change: ChangeRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a change event into its data row (after, or before for a delete) and its `_cdc_*` values."""
    extra = {
        "_cdc_op": change.op,
        "_cdc_ts_ms": change.ts_ms,
        "_cdc_source_ts_ms": change.source_ts_ms,
        "_cdc_position": orjson.dumps(change.position).decode() if change.position else None,
    }
    return dict(change.row or {}), extra


def meta_schema(cdc: bool) -> pa.Schema:
    return pa.schema([*META_FIELDS, *(CDC_FIELDS if cdc else ())])


@dataclass
class BatchBuilder:
    """Turns rows into Arrow; remembers data column types across batches (`known`)."""

    fixed: pa.Schema | None = None
    cdc: bool = False
    known: dict[str, pa.DataType] = field(default_factory=dict)

    def learn(self, schema: pa.Schema) -> None:
        """Adopt the data column types of a table schema (metadata columns are skipped)."""
        for f in schema:
            if f.name not in RESERVED:
                self.known[f.name] = f.type

    def build(
        self, rows: list[dict[str, Any]], metas: list[Meta], extras: list[dict[str, Any]] | None = None
    ) -> tuple[pa.Table | None, list[tuple[int, Exception]]]:
        """One Arrow table for the rows that convert, and (index, error) for those that do not.

        When the batch does not convert as a whole, each column whose type is not known yet takes the
        type of the majority of its values (ints and floats are all numbers), and every row is converted
        on its own under those types: a row that cannot take them fails alone, with the reason."""
        failures: list[tuple[int, Exception]] = []
        try:
            data = self._data(rows, self.known)
            keep = list(range(len(rows)))
        except _CONVERT_ERRORS:
            types = {**_settle_types(rows, self.known), **self.known}
            parts, keep = [], []
            for i, row in enumerate(rows):
                try:
                    parts.append(self._data([row], types))
                    keep.append(i)
                except _CONVERT_ERRORS as exc:
                    failures.append((i, exc))
            if not parts:
                return None, failures
            data = pa.concat_tables(parts, promote_options="permissive")
        for f in data.schema:
            if not pa.types.is_null(f.type):
                self.known.setdefault(f.name, f.type)
        kept = [metas[i] for i in keep]
        now = int(time.time() * 1_000_000)
        cols: list[pa.Array] = [
            pa.array([m.topic for m in kept], pa.string()),
            pa.array([m.partition for m in kept], pa.int32()),
            pa.array([m.offset for m in kept], pa.int64()),
            pa.array([m.timestamp_ms for m in kept], pa.timestamp("ms", tz="UTC")).cast(TS),
            pa.array([now] * len(kept), TS),
        ]
        if self.cdc:
            ex = [extras[i] for i in keep] if extras is not None else [{} for _ in keep]
            cols += [pa.array([e.get(f.name) for e in ex], f.type) for f in CDC_FIELDS[:-1]]
            cols.append(pa.array([m.key for m in kept], pa.binary()))
        meta = pa.Table.from_arrays(cols, schema=meta_schema(self.cdc))
        for f, col in zip(data.schema, data.columns, strict=True):
            if f.name not in RESERVED:
                meta = meta.append_column(f, col)
        return meta, failures

    def _data(self, rows: list[dict[str, Any]], types: dict[str, pa.DataType]) -> pa.Table:
        if self.fixed is not None:
            return pa.Table.from_pylist(rows, schema=self.fixed)
        # Not `from_pylist(rows)`: it takes the columns from the first row only, so a batch opening with a
        # tombstone (no data) or an older-schema record would silently drop every other column.
        names = dict.fromkeys(k for row in rows for k in row)
        if not names:
            return pa.Table.from_pylist(rows)  # no data columns (e.g. only tombstones), len(rows) rows
        table = pa.Table.from_pydict({n: pa.array([row.get(n) for row in rows], types.get(n)) for n in names})
        for i, f in enumerate(table.schema):
            want = types.get(f.name)
            if want is not None and want != f.type:
                table = table.set_column(i, pa.field(f.name, want), table.column(i).cast(want))
        return table


_KIND_ORDER = ("number", "string", "bool", "struct", "list")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "struct"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _settle_types(rows: list[dict[str, Any]], known: dict[str, pa.DataType]) -> dict[str, pa.DataType]:
    """For columns of unknown type, the Arrow type of the majority kind of their values."""
    values: dict[str, list[Any]] = {}
    for row in rows:
        for name, v in row.items():
            if v is not None and name not in known:
                values.setdefault(name, []).append(v)
    types: dict[str, pa.DataType] = {}
    for name, vs in values.items():
        counts = Counter(_kind(v) for v in vs)
        rank = {k: i for i, k in enumerate(_KIND_ORDER)}
        kind = max(counts, key=lambda k: (counts[k], -rank.get(k, len(rank))))
        try:
            types[name] = pa.array([v for v in vs if _kind(v) == kind]).type
        except _CONVERT_ERRORS:
            continue  # no common type even within the kind: each row keeps its own inference
    return types


def concat(batches: list[pa.Table]) -> pa.Table:
    """One table from buffered batches; columns that stayed all-null (type unknown) are dropped."""
    table = pa.concat_tables(batches, promote_options="permissive") if len(batches) > 1 else batches[0]
    nulls = [f.name for f in table.schema if pa.types.is_null(f.type)]
    return table.drop_columns(nulls) if nulls else table
