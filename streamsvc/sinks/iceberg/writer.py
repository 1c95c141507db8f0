"""Fenced, exactly-once appends of Arrow batches to one Iceberg table (BRIEF §3.7).

A commit refreshes the table, checks that the offsets it holds for this writer's partitions are the ones
the writer expects (the fence), and appends the batch with the new offsets in the snapshot summary and
the table properties, in one catalog transaction. pyiceberg's own retry is disabled on sink tables
(`commit.retry.num-retries=0`): it would rebase a stale append onto a newer head and duplicate rows.
Our loop instead re-runs the fence after every conflict.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.table import Table

from streamsvc.errors import FatalRuntimeError
from streamsvc.faults import FaultHook, no_faults
from streamsvc.sinks.iceberg.catalog import ensure_namespace
from streamsvc.sinks.iceberg.offsets import (
    COMMIT_ID,
    WRITER,
    TableOffsets,
    offset_properties,
    read_offsets,
)
from streamsvc.sinks.iceberg.spec import PartitionField

SINK_TABLE_PROPERTIES = {
    "commit.retry.num-retries": "0",  # never let pyiceberg rebase a stale append (duplicates)
    "commit.manifest-merge.enabled": "true",  # bounded manifest count -> flat commit latency
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    "write.target-file-size-bytes": str(128 * 1024 * 1024),  # what compaction packs small files up to
}


@dataclass(frozen=True)
class CommitOutcome:
    """`committed`: the batch is in the table. Otherwise the writer was fenced: `offsets` is what the
    table holds, and the caller must drop its buffer and re-seek there."""

    committed: bool
    offsets: dict[int, int]
    commit_id: str | None = None
    attempts: int = 1


class TableWriter:
    """Appends batches for one (group, topic) to one table, fenced on the offsets the table holds."""

    def __init__(
        self,
        catalog: Catalog,
        identifier: str,
        group: str,
        topic: str,
        writer_id: str,
        partition_by: list[PartitionField] | None = None,
        properties: dict[str, str] | None = None,
        faults: FaultHook = no_faults,
        max_attempts: int = 20,
        log: Any = None,
    ) -> None:
        self.catalog = catalog
        self.identifier = identifier
        self.group = group
        self.topic = topic
        self.writer_id = writer_id
        self.partition_by = partition_by or []
        self.properties = {**SINK_TABLE_PROPERTIES, **(properties or {})}
        self.faults = faults
        self.max_attempts = max_attempts
        self.log = log
        self.table: Table | None = None

    # ---- table lifecycle -------------------------------------------------------------------------

    def load(self) -> Table | None:
        """The table, refreshed; None when it does not exist yet."""
        if self.table is None:
            try:
                self.table = self.catalog.load_table(self.identifier)
            except NoSuchTableError:
                return None
            self._ensure_layout(self.table)
        else:
            self.table.refresh()
        return self.table

    def ensure(self, schema: pa.Schema) -> Table:
        """The table, created with `schema` (plus sink properties and partition spec) when missing."""
        table = self.load()
        if table is not None:
            return table
        namespace = self.identifier.rsplit(".", 1)[0]
        ensure_namespace(self.catalog, namespace)
        missing = [f.column for f in self.partition_by if f.column not in schema.names]
        if missing and self.log is not None:
            # E.g. a first commit of dead letters only: the spec is added once the columns exist.
            self.log.info("iceberg_partition_columns_pending", table=self.identifier, columns=missing)
        try:
            table = self.catalog.create_table(self.identifier, schema, properties=self.properties)
        except TableAlreadyExistsError:
            table = self.catalog.load_table(self.identifier)
        self._ensure_layout(table)
        self.table = table
        return table

    def _ensure_layout(self, table: Table) -> None:
        """Sink properties and partition fields on an existing table (idempotent, for crash safety)."""
        want = {k: v for k, v in self.properties.items() if table.properties.get(k) != v}
        if want:
            with table.transaction() as txn:
                txn.set_properties(want)
        have = {f.name for f in table.spec().fields}
        todo = [f for f in self.partition_by if f.name not in have]
        if todo and all(f.column in table.schema().column_names for f in todo):
            with table.update_spec() as upd:
                for f in todo:
                    upd.add_field(f.column, f.transform, f.name)

    def offsets(self) -> TableOffsets:
        """What the table holds for this writer's (group, topic), freshly read."""
        table = self.load()
        return TableOffsets.empty() if table is None else read_offsets(table, self.group, self.topic)

    # ---- the fenced commit -----------------------------------------------------------------------

    def commit(
        self,
        data: pa.Table,
        positions: dict[int, int],
        expected: dict[int, int | None],
        extra_properties: Callable[[Table], dict[str, str]] | None = None,
    ) -> CommitOutcome:
        """Append `data` (may be empty: an offset-only commit) and advance `positions`, fenced on
        `expected` (the table's offsets this writer last saw for those partitions). `extra_properties`
        computes further table properties from the refreshed table, set in the same commit."""
        ours: set[str] = set()
        for attempt in range(1, self.max_attempts + 1):
            table = self.ensure(data.schema)
            current = read_offsets(table, self.group, self.topic)
            if current.commit_id is not None and current.commit_id in ours:
                return CommitOutcome(True, current.offsets, current.commit_id, attempt)  # landed after all
            stale = {p: (current.offsets.get(p), expected.get(p)) for p in positions}
            stale = {p: v for p, v in stale.items() if v[0] != v[1]}
            if stale:
                if self.log is not None:
                    self.log.warning("iceberg_fenced", table=self.identifier, stale=_fmt(stale))
                return CommitOutcome(False, current.offsets, None, attempt)
            merged = {**current.offsets, **positions}
            commit_id = uuid.uuid4().hex
            ours.add(commit_id)
            props = offset_properties(self.group, self.topic, merged, commit_id)
            summary = {**props, COMMIT_ID: commit_id, WRITER: self.writer_id}
            if extra_properties is not None:
                props = {**props, **extra_properties(table)}
            txn = table.transaction()
            new_cols = [f for f in data.schema if f.name not in table.schema().column_names]
            if new_cols:
                with txn.update_schema() as upd:
                    upd.union_by_name(pa.schema(new_cols))
            txn.set_properties(props)
            self.faults("before_write")
            txn.append(_conform(data, txn.table_metadata.schema().as_arrow()), snapshot_properties=summary)
            self.faults("after_write")
            try:
                txn.commit_transaction()
            except CommitFailedException as exc:
                # Someone else committed since our refresh: re-run the fence against the new head.
                if self.log is not None:
                    self.log.info(
                        "iceberg_commit_conflict", table=self.identifier, attempt=attempt, error=str(exc)
                    )
                time.sleep(min(0.02 * 2**attempt, 1.0) * random.uniform(0.5, 1.0))
                continue
            except Exception as exc:  # outcome unknown: the next turn finds our commit id or retries
                if self.log is not None:
                    self.log.warning("iceberg_commit_unknown", table=self.identifier, error=repr(exc))
                time.sleep(min(0.05 * 2**attempt, 2.0))
                continue
            if new_cols:
                self._ensure_layout(table)  # partition fields whose columns only now exist
            return CommitOutcome(True, merged, commit_id, attempt)
        raise FatalRuntimeError(f"{self.identifier}: no commit after {self.max_attempts} attempts")


def _conform(data: pa.Table, target: pa.Schema) -> pa.Table:
    """Cast `data`'s columns to the table's Arrow types and nullability (columns the table lacks stay)."""
    fields = [target.field(f.name) if f.name in target.names else f for f in data.schema]
    schema = pa.schema(fields)
    return data if schema == data.schema else data.cast(schema)


def _fmt(stale: dict[int, tuple[int | None, int | None]]) -> dict[str, str]:
    return {str(p): f"table={t} expected={e}" for p, (t, e) in sorted(stale.items())}
