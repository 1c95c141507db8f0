"""`IcebergSinkSpec`: a plain description of one Kafka topic -> Iceberg table sink."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    Transform,
    TruncateTransform,
    YearTransform,
)

from streamsvc.errors import ConfigError, TopologyError
from streamsvc.serde.base import Serde
from streamsvc.serde.json import JsonSerde
from streamsvc.topology.loader import load_module

_PARTITION = re.compile(r"^\s*(?P<fn>[a-z]+)(?:\[(?P<arg>\d+)\])?\((?P<col>[\w.]+)\)\s*$")
_NAMED: dict[str, Callable[[], Transform[Any, Any]]] = {
    "identity": IdentityTransform,
    "year": YearTransform,
    "month": MonthTransform,
    "day": DayTransform,
    "hour": HourTransform,
}


@dataclass(frozen=True)
class PartitionField:
    """One partition field: `transform` applied to `column` (`day(_kafka_timestamp)`, `identity(region)`)."""

    column: str
    transform: Transform[Any, Any]
    name: str

    @classmethod
    def parse(cls, text: str) -> PartitionField:
        """Parse `identity(c)`, `year|month|day|hour(c)`, `bucket[N](c)` or `truncate[W](c)`."""
        m = _PARTITION.match(text)
        if m is None:
            raise ConfigError(
                f"partition field {text!r}: expected e.g. 'day(_kafka_timestamp)' or 'identity(col)'"
            )
        fn, arg, col = m.group("fn"), m.group("arg"), m.group("col")
        transform: Transform[Any, Any]
        if fn in _NAMED and arg is None:
            transform = _NAMED[fn]()
        elif fn == "bucket" and arg is not None:
            transform = BucketTransform(int(arg))
        elif fn == "truncate" and arg is not None:
            transform = TruncateTransform(int(arg))
        else:
            raise ConfigError(f"partition field {text!r}: unknown transform {fn!r}")
        name = col if fn == "identity" else f"{col}_{fn}{arg or ''}"
        return cls(col, transform, name)


@dataclass(frozen=True)
class IcebergSinkSpec:
    """One Kafka topic landing in one Iceberg table, exactly once.

        `source` is a logical topic name (mapped through `Settings.topics`). `table` is `namespace.name`.
        `schema` fixes the data columns (Arrow); without it they are inferred from the records and the table
        evolves (`union_by_name`) when new fields appear, older rows reading as null. `partition_by` lists
        transforms such as `"day(_kafka_timestamp)"`. A commit happens every `commit_interval_s` or as soon as
        `max_rows`/`max_bytes` are buffered. `cdc=True` decodes Debezium envelopes into an append-only
        changelog (bronze) table; `silver_table` + `key_columns` add the current-state table, merged every
    `merge_interval_s` (copy-on-write, see `merge.py`). `maintain_every_commits=N` runs table maintenance in
    the agent after every N-th commit: expire snapshots older than `maintain_older_than_s` beyond the newest
    `maintain_retain_last`, and merge manifests (no orphan sweep: run `maintain` for that);
    `maintain_compact=True` also compacts small files there (see `compaction.py`).
    """

    name: str
    source: str
    table: str
    value_serde: Serde = field(default_factory=JsonSerde)
    schema: pa.Schema | None = None
    partition_by: Sequence[str] = ()
    commit_interval_s: float = 60.0
    max_rows: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    cdc: bool = False
    silver_table: str | None = None
    key_columns: Sequence[str] = ()
    merge_interval_s: float = 300.0
    maintain_every_commits: int = 0
    maintain_retain_last: int = 20
    maintain_older_than_s: float = 0.0
    maintain_compact: bool = False
    table_properties: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "." not in self.table:
            raise ConfigError(f"sink {self.name}: table {self.table!r} must be 'namespace.name'")
        if self.commit_interval_s <= 0 or self.max_rows <= 0 or self.max_bytes <= 0:
            raise ConfigError(f"sink {self.name}: commit_interval_s, max_rows and max_bytes must be positive")
        if self.maintain_every_commits < 0 or self.maintain_retain_last < 1 or self.merge_interval_s <= 0:
            raise ConfigError(
                f"sink {self.name}: maintain_every_commits >= 0, maintain_retain_last >= 1 and "
                "merge_interval_s > 0 are required"
            )
        if self.silver_table is not None and not (self.cdc and self.key_columns):
            raise ConfigError(f"sink {self.name}: silver_table needs cdc=True and key_columns")
        for text in self.partition_by:
            PartitionField.parse(text)

    @property
    def partition_fields(self) -> list[PartitionField]:
        return [PartitionField.parse(t) for t in self.partition_by]


def load_specs(ref: str) -> list[IcebergSinkSpec]:
    """`file.py[:attr]` or `package.module:attr`; the attribute (default `sink`) is a spec, a list of
    specs, or a zero-argument function returning either."""
    attr = ref.split(":", 1)[1] if ":" in ref else "sink"
    obj = getattr(load_module(ref), attr, None)
    if callable(obj) and not isinstance(obj, IcebergSinkSpec):
        obj = obj()
    specs = [obj] if isinstance(obj, IcebergSinkSpec) else obj
    if (
        not isinstance(specs, list | tuple)
        or not specs
        or not all(isinstance(s, IcebergSinkSpec) for s in specs)
    ):
        raise TopologyError(f"{ref}: expected attribute {attr!r} to be an IcebergSinkSpec or a list of them")
    return list(specs)
