"""CDC silver: the current-state table, kept by a copy-on-write merge of the bronze changelog (BRIEF §3.7).

Bronze (`cdc=True`) is an append-only changelog whose snapshots carry the Kafka offsets they cover. A
merge pins the bronze head snapshot S, reads the bronze rows beyond the position the silver table
recorded (per partition, `_kafka_offset >= merged[p]`; rows of S are all below S's offsets), keeps the
latest change per key (Kafka order: one key lives in one partition), and then, in ONE silver
transaction, deletes the affected keys (copy-on-write: pyiceberg cannot write equality deletes) and
appends the surviving rows. The transaction records what it merged through (bronze snapshot id, its
sequence number and offsets) in the snapshot summary and in a table property, so a merge that crashed
before its commit is simply redone, and one that crashed after it finds nothing new: re-running is
idempotent.

Keys: `key_columns` of the row (`after`, or `before` for a delete). A tombstone carries only the Kafka
key: its key is taken from an earlier change with the same Kafka key bytes in the same merge, else from
the Kafka key decoded as a Debezium JSON key struct; a tombstone whose key cannot be resolved is skipped
(a tombstone follows the delete that already removed the key). `t` (truncate) and `m` (message) events
are ignored.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import (
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    Or,
)
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from streamsvc.errors import ConfigError, FatalRuntimeError
from streamsvc.faults import FaultHook, no_faults
from streamsvc.serde.debezium import TOMBSTONE
from streamsvc.sinks.iceberg.catalog import ensure_namespace
from streamsvc.sinks.iceberg.offsets import decode_offsets, encode_offsets, read_offsets

# pyiceberg's predicates are pydantic models whose signatures mypy cannot see through.
_Eq = cast(Callable[[str, Any], BooleanExpression], EqualTo)
_GtEq = cast(Callable[[str, Any], BooleanExpression], GreaterThanOrEqual)
_In = cast(Callable[[str, set[Any]], BooleanExpression], In)

MERGE_PREFIX = "streamsvc.merge."
SILVER_TABLE_PROPERTIES = {
    "commit.retry.num-retries": "0",  # a stale merge must be re-planned, never rebased
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
}
UPSERT_OPS = frozenset({"c", "u", "r"})
DELETE_OPS = frozenset({"d", TOMBSTONE})


def merge_key(bronze: str) -> str:
    """Summary/property key holding what a silver table merged from `bronze`."""
    return f"{MERGE_PREFIX}{bronze}"


@dataclass(frozen=True)
class MergePosition:
    """How far a silver table has merged one bronze table."""

    offsets: dict[int, int]
    snapshot_id: int | None = None
    sequence_number: int | None = None

    def encode(self) -> str:
        return orjson.dumps(
            {
                "snapshot_id": self.snapshot_id,
                "sequence_number": self.sequence_number,
                "offsets": orjson.loads(encode_offsets(self.offsets)),
            }
        ).decode()

    @classmethod
    def decode(cls, raw: str) -> MergePosition:
        obj = orjson.loads(raw)
        return cls(
            decode_offsets(orjson.dumps(obj["offsets"]).decode()), obj["snapshot_id"], obj["sequence_number"]
        )


@dataclass(frozen=True)
class MergeReport:
    """One merge run: `committed` is False when there was nothing new to merge."""

    committed: bool
    position: MergePosition
    changes: int = 0
    upserted: int = 0
    deleted_keys: int = 0
    skipped: int = 0
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "committed": self.committed,
            "bronze_snapshot_id": self.position.snapshot_id,
            "bronze_sequence_number": self.position.sequence_number,
            "offsets": {str(p): o for p, o in sorted(self.position.offsets.items())},
            "changes": self.changes,
            "upserted": self.upserted,
            "deleted_keys": self.deleted_keys,
            "skipped": self.skipped,
        }


def read_position(silver: Table, bronze: str) -> MergePosition:
    """What `silver` merged from `bronze`, as of its current snapshot (ancestry, then property)."""
    key = merge_key(bronze)
    for snap in ancestors_of(silver.current_snapshot(), silver.metadata):
        raw = snap.summary[key] if snap.summary is not None else None
        if raw is not None:
            return MergePosition.decode(raw)
    raw = silver.properties.get(key)
    return MergePosition.decode(raw) if raw is not None else MergePosition({})


class SilverMerger:
    """Merges one bronze changelog table into its silver current-state table."""

    def __init__(
        self,
        catalog: Catalog,
        bronze: str,
        silver: str,
        key_columns: list[str],
        group: str,
        topic: str,
        faults: FaultHook = no_faults,
        max_attempts: int = 10,
        log: Any = None,
    ) -> None:
        if not key_columns:
            raise ConfigError(f"silver table {silver}: key_columns must not be empty")
        self.catalog = catalog
        self.bronze = bronze
        self.silver = silver
        self.key_columns = list(key_columns)
        self.group = group
        self.topic = topic
        self.faults = faults
        self.max_attempts = max_attempts
        self.log = log

    def merge(self) -> MergeReport:
        """Merge everything bronze holds beyond silver's recorded position; idempotent."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._merge_once(attempt)
            except CommitFailedException as exc:  # a concurrent merge: re-plan from the new position
                if self.log is not None:
                    self.log.info("silver_merge_conflict", table=self.silver, attempt=attempt, error=str(exc))
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise FatalRuntimeError(f"{self.silver}: no merge after {self.max_attempts} attempts")

    # ---- one attempt ---------------------------------------------------------------------------

    def _merge_once(self, attempt: int) -> MergeReport:
        try:
            bronze = self.catalog.load_table(self.bronze)
        except NoSuchTableError:
            return MergeReport(False, MergePosition({}), attempts=attempt)
        head = bronze.current_snapshot()
        if head is None:
            return MergeReport(False, MergePosition({}), attempts=attempt)
        target = MergePosition(
            read_offsets(bronze, self.group, self.topic).offsets, head.snapshot_id, head.sequence_number
        )
        silver = self._ensure_silver(bronze)
        done = read_position(silver, self.bronze)
        todo = {p: o for p, o in target.offsets.items() if o > done.offsets.get(p, 0)}
        if not todo:
            return MergeReport(False, done, attempts=attempt)
        changes = self._read_changes(bronze, head.snapshot_id, done.offsets, list(todo))
        latest, skipped = self._latest(changes)
        upserts = [i for i, op in latest.values() if op in UPSERT_OPS]
        rows = changes.take(pa.array(sorted(upserts), pa.int64())) if upserts else changes.slice(0, 0)
        summary = {
            merge_key(self.bronze): target.encode(),
            "streamsvc.merge.changes": str(changes.num_rows),
        }
        txn = silver.transaction()
        new_cols = [f for f in bronze.schema().as_arrow() if f.name not in silver.schema().column_names]
        if new_cols:
            with txn.update_schema() as upd:
                upd.union_by_name(pa.schema(new_cols))
        txn.set_properties({merge_key(self.bronze): target.encode()})
        keys = list(latest)
        if keys:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Delete operation did not match any records")
                txn.delete(delete_filter=self._key_filter(keys), snapshot_properties=summary)
        self.faults("merge_after_delete")
        txn.append(_conform(rows, txn.table_metadata.schema().as_arrow()), snapshot_properties=summary)
        self.faults("merge_before_commit")
        txn.commit_transaction()
        self.faults("merge_after_commit")
        if self.log is not None:
            self.log.info(
                "silver_merged",
                table=self.silver,
                bronze_snapshot_id=target.snapshot_id,
                changes=changes.num_rows,
                upserted=len(upserts),
                keys=len(keys),
            )
        return MergeReport(True, target, changes.num_rows, len(upserts), len(keys), skipped, attempt)

    def _ensure_silver(self, bronze: Table) -> Table:
        try:
            silver = self.catalog.load_table(self.silver)
        except NoSuchTableError:
            missing = [c for c in self.key_columns if c not in bronze.schema().column_names]
            if missing:
                raise ConfigError(
                    f"{self.silver}: key columns {missing} are not in {self.bronze}'s schema"
                ) from None
            ensure_namespace(self.catalog, self.silver.rsplit(".", 1)[0])
            try:
                silver = self.catalog.create_table(
                    self.silver, bronze.schema(), properties=SILVER_TABLE_PROPERTIES
                )
            except Exception:  # created concurrently
                silver = self.catalog.load_table(self.silver)
        want = {k: v for k, v in SILVER_TABLE_PROPERTIES.items() if silver.properties.get(k) != v}
        if want:
            with silver.transaction() as txn:
                txn.set_properties(want)
        return silver

    def _read_changes(
        self, bronze: Table, snapshot_id: int, done: dict[int, int], partitions: list[int]
    ) -> pa.Table:
        """Bronze rows of `snapshot_id` beyond `done`, in Kafka order (partition, offset)."""
        terms: list[BooleanExpression] = [
            And(_Eq("_kafka_partition", p), _GtEq("_kafka_offset", done.get(p, 0)))
            for p in sorted(partitions)
        ]
        row_filter = terms[0] if len(terms) == 1 else Or(*terms)
        rows = bronze.scan(row_filter=row_filter, snapshot_id=snapshot_id).to_arrow()
        rows = rows.filter(pc.equal(rows.column("_kafka_topic"), self.topic))
        return rows.sort_by([("_kafka_partition", "ascending"), ("_kafka_offset", "ascending")])

    def _latest(self, changes: pa.Table) -> tuple[dict[tuple[Any, ...], tuple[int, str]], int]:
        """Key -> (row index, op) of its last change; and how many changes had no resolvable key."""
        ops = changes.column("_cdc_op").to_pylist()
        kafka_keys = changes.column("_kafka_key").to_pylist()
        cols = [changes.column(c).to_pylist() for c in self.key_columns]
        by_kafka_key: dict[bytes, tuple[Any, ...]] = {}
        latest: dict[tuple[Any, ...], tuple[int, str]] = {}
        skipped = 0
        for i, op in enumerate(ops):
            if op not in UPSERT_OPS and op not in DELETE_OPS:
                skipped += 1
                continue
            key: tuple[Any, ...] | None = tuple(c[i] for c in cols)
            kk = kafka_keys[i]
            if key is None or any(v is None for v in key):
                key = by_kafka_key.get(kk) if kk is not None else None
                if key is None:
                    key = self._decode_key(kk)
            if key is None:
                skipped += 1
                continue
            if kk is not None:
                by_kafka_key[kk] = key
            latest[key] = (i, op)
        return latest, skipped

    def _decode_key(self, raw: bytes | None) -> tuple[Any, ...] | None:
        if raw is None:
            return None
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if isinstance(obj, dict) and obj.keys() == {"schema", "payload"}:
            obj = obj["payload"]
        if not isinstance(obj, dict) or any(obj.get(c) is None for c in self.key_columns):
            return None
        return tuple(obj[c] for c in self.key_columns)

    def _key_filter(self, keys: list[tuple[Any, ...]]) -> BooleanExpression:
        if len(self.key_columns) == 1:
            return _In(self.key_columns[0], {k[0] for k in keys})
        terms = [
            And(*[_Eq(c, v) for c, v in zip(self.key_columns, k, strict=True)])
            if len(k) > 1
            else _Eq(self.key_columns[0], k[0])
            for k in keys
        ]
        return terms[0] if len(terms) == 1 else Or(*terms)


def _conform(data: pa.Table, target: pa.Schema) -> pa.Table:
    """`data` with the silver table's column order, types and nullability (missing columns as null)."""
    cols = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(data.num_rows, f.type)
        for f in target
    ]
    return pa.Table.from_arrays(cols, schema=target)
