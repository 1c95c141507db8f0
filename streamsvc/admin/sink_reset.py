"""Resetting the offsets an Iceberg sink table holds, so that a replay reproduces its rows (BRIEF §3.7).

The positions of a sink live in the table (snapshot summary + mirrored property), so a reset is a table
change, in one catalog transaction:

- `rollback` (default): make the newest ancestor snapshot whose offsets are at or before the target
  current (or the empty table, when even the first commit is past it). The sink then resumes from that
  snapshot's offsets, which are at or before the target: the rows it re-adds are exactly the ones the
  rollback removed. Metadata only; no data file is written.
- `rewrite`: delete the rows at or after the target (`_kafka_partition`, `_kafka_offset` of the sink's
  topic) and record the target as the table's offsets: exact, copy-on-write.

A sink reading a topic the topology *writes* is downstream of the replay: the replay appends fresh
outputs after the current end, so its rows are removed (rollback to before its first commit, or deleted)
and its offsets set to that end. This is only exact for a full replay (every input from its start).
The offsets property is rewritten with the new offsets either way, so it never runs ahead of the rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Literal, cast

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import And, BooleanExpression, EqualTo, GreaterThanOrEqual, Or
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of
from pyiceberg.table.update.snapshot import ManageSnapshots

from streamsvc.admin.app import SinkRef
from streamsvc.errors import ConfigError, StreamsvcError
from streamsvc.sinks.iceberg.offsets import (
    COMMIT_ID,
    WRITER,
    commit_id_key,
    decode_offsets,
    offset_properties,
    offsets_key,
    read_offsets,
)

# pyiceberg's predicates are pydantic models whose constructors mypy misreads (as merge.py notes).
_Eq = cast(Callable[[str, Any], BooleanExpression], EqualTo)
_GtEq = cast(Callable[[str, Any], BooleanExpression], GreaterThanOrEqual)
Mode = Literal["rollback", "rewrite"]
EMPTY = -1  # `rollback_to` value: the table before its first snapshot
RESET_WRITER = "streamsvc-reset-app"


@dataclass
class SinkResetPlan:
    """What resetting one sink table does; `changes` is False when the table already matches."""

    sink: SinkRef
    mode: Mode
    table_exists: bool
    head: int | None  # current snapshot id when planned (the fence)
    held: dict[int, int]
    rollback_to: int | None = None  # snapshot id, EMPTY, or None for no rollback
    rolled_back_offsets: dict[int, int] = field(default_factory=dict)
    delete_from: dict[int, int] | None = None  # rewrite: partition -> first offset whose rows go
    final: dict[int, int] | None = None  # offsets recorded by a new snapshot (None: keep rolled_back)

    @property
    def changes(self) -> bool:
        return self.rollback_to is not None or self.delete_from is not None or self.final is not None

    @property
    def resumes_at(self) -> dict[int, int]:
        if self.final is not None:
            return self.final
        return self.rolled_back_offsets if self.rollback_to is not None else self.held

    def describe(self) -> str:
        ref = self.sink
        lines = [
            f"Iceberg sink {ref.spec.name} (table {ref.spec.table}, topic {ref.topic}, {ref.relation} of the "
            f"topology, mode {self.mode}): holds {_fmt(self.held)}"
        ]
        if not self.table_exists:
            downstream = ref.relation == "output"
            warning = " (WARNING: its first run will read the old outputs too)" if downstream else ""
            return lines[0] + f"; the table does not exist yet: nothing to reset{warning}"
        if self.rollback_to == EMPTY:
            lines.append("  roll back to the empty table (before its first snapshot)")
        elif self.rollback_to is not None:
            lines.append(
                f"  roll back to snapshot {self.rollback_to} (offsets {_fmt(self.rolled_back_offsets)})"
            )
        if self.delete_from is not None:
            lines.append(f"  delete rows of {ref.topic} at or after {_fmt(self.delete_from)}")
        if not self.changes:
            lines.append("  nothing to change")
        lines.append(f"  the sink resumes at {_fmt(self.resumes_at)}")
        return "\n".join(lines)


def _fmt(offsets: dict[int, int]) -> str:
    return (
        "{" + ", ".join(f"{p}: {o}" for p, o in sorted(offsets.items())) + "}"
        if offsets
        else "{} (beginning)"
    )


def plan_sink_reset(
    catalog: Catalog,
    sink: SinkRef,
    mode: Mode,
    target: dict[int, int] | None,
    output_end: dict[int, int] | None,
) -> SinkResetPlan:
    """Plan one sink. `target`: the input reset positions of the sink's topic (input relation);
    `output_end`: the end offsets of its topic now (output relation, full replay)."""
    try:
        table = catalog.load_table(sink.spec.table)
    except NoSuchTableError:
        return SinkResetPlan(sink, mode, False, None, {})
    head = table.current_snapshot()
    held = read_offsets(table, sink.group, sink.topic).offsets
    plan = SinkResetPlan(sink, mode, True, head.snapshot_id if head else None, held)
    if sink.relation == "output":
        if output_end is None:
            raise ConfigError("internal: output_end is needed for a downstream sink")
        if not held and not _has_rows_of(table, sink):
            if output_end:
                plan.final = dict(output_end)  # nothing to remove; skip the old outputs
            return plan
        keep: dict[int, int] = {}  # none of the rows read from the old outputs stay
        resume = dict(output_end)
    else:
        assert target is not None
        keep = {**held, **target}
        resume = keep
        if all(keep.get(p, 0) >= o for p, o in held.items()):
            forward = {p: o for p, o in keep.items() if o != held.get(p, 0)}
            if forward:
                plan.final = {**held, **keep}  # only forward moves: skip records, keep every row
            return plan
    if mode == "rewrite":
        plan.delete_from = {p: keep.get(p, 0) for p in {*held, *keep}} if sink.relation == "input" else {}
        plan.final = resume
        return plan
    snapshot, offsets = _rollback_target(table, sink, keep)
    plan.rollback_to, plan.rolled_back_offsets = snapshot, offsets
    if sink.relation == "output":
        plan.final = resume
    else:
        skip = {p: o for p, o in keep.items() if o > held.get(p, 0)}  # explicit forward moves
        if skip:
            plan.final = {**offsets, **skip}
    return plan


def _has_rows_of(table: Table, sink: SinkRef, snapshot_id: int | None = None) -> bool:
    """Whether the table (as of `snapshot_id`, default current) holds a row read from the sink's topic."""
    if "_kafka_topic" not in table.schema().column_names:
        return False
    if snapshot_id is None:
        head = table.current_snapshot()
        if head is None:
            return False
        snapshot_id = head.snapshot_id
    scan = table.scan(row_filter=_Eq("_kafka_topic", sink.topic), snapshot_id=snapshot_id, limit=1)
    return len(scan.to_arrow()) > 0


def _rollback_target(table: Table, sink: SinkRef, keep: dict[int, int]) -> tuple[int, dict[int, int]]:
    """The newest ancestor whose offsets are all at or before `keep`; EMPTY when none is."""
    key = offsets_key(sink.group, sink.topic)
    chain = list(ancestors_of(table.current_snapshot(), table.metadata))
    carried = [decode_offsets(raw) if (raw := _summary_value(s, key)) is not None else None for s in chain]
    for i, snap in enumerate(chain):
        offsets = next((c for c in carried[i:] if c is not None), None)
        if offsets is None:
            # No commit of this sink in the visible history: fine when no row of its topic is there
            # either; otherwise the snapshots that recorded their offsets were expired.
            if _has_rows_of(table, sink, snap.snapshot_id):
                raise StreamsvcError(
                    f"{sink.spec.table}: the offsets of the rows in snapshot {snap.snapshot_id} expired with "
                    "older snapshots; reset with --iceberg-reset rewrite instead"
                )
            return snap.snapshot_id, {}
        if all(o <= keep.get(p, 0) for p, o in offsets.items()):
            return snap.snapshot_id, offsets
    return EMPTY, {}


def _summary_value(snap: Snapshot, key: str) -> str | None:
    return None if snap.summary is None else snap.summary[key]


def apply_sink_reset(catalog: Catalog, plan: SinkResetPlan) -> None:
    """Carry out `plan` in one catalog transaction, fenced on the snapshot it was planned against."""
    if not plan.table_exists or not plan.changes:
        return
    sink = plan.sink
    table = catalog.load_table(sink.spec.table)
    head = table.current_snapshot()
    if (head.snapshot_id if head else None) != plan.head:
        raise StreamsvcError(f"{sink.spec.table} changed since the reset was planned; run it again")
    txn = table.transaction()
    if plan.rollback_to == EMPTY:
        ManageSnapshots(txn).remove_branch("main").commit()
    elif plan.rollback_to is not None:
        ManageSnapshots(txn).rollback_to_snapshot(plan.rollback_to)
    if plan.delete_from is not None:
        txn.delete(_rows_from(sink.topic, plan.delete_from))
    offsets = plan.resumes_at
    if plan.final is not None:
        commit_id = uuid.uuid4().hex
        props = offset_properties(sink.group, sink.topic, offsets, commit_id)
        summary = {**props, COMMIT_ID: commit_id, WRITER: RESET_WRITER}
        txn.set_properties(props)
        txn.append(txn.table_metadata.schema().as_arrow().empty_table(), snapshot_properties=summary)
    elif offsets:
        carrier = _carrier_commit_id(table, plan.rollback_to, sink)
        txn.set_properties(offset_properties(sink.group, sink.topic, offsets, carrier))
    else:
        stale = (offsets_key(sink.group, sink.topic), commit_id_key(sink.group, sink.topic))
        txn.remove_properties(*[k for k in stale if k in table.properties])
    txn.commit_transaction()


def _rows_from(topic: str, first: dict[int, int]) -> BooleanExpression:
    """Rows of `topic` at or after `first[p]` in each partition (every row of `topic` when empty)."""
    of_topic = _Eq("_kafka_topic", topic)
    if not first:
        return of_topic
    per_partition: list[BooleanExpression] = [
        And(_Eq("_kafka_partition", p), _GtEq("_kafka_offset", o)) for p, o in first.items()
    ]
    return And(of_topic, reduce(Or, per_partition))


def _carrier_commit_id(table: Table, snapshot_id: int | None, sink: SinkRef) -> str:
    """The commit id of the snapshot whose summary carries the offsets as of `snapshot_id`."""
    key = offsets_key(sink.group, sink.topic)
    start = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    for snap in ancestors_of(start, table.metadata):
        if _summary_value(snap, key) is not None:
            return str(_summary_value(snap, COMMIT_ID) or "")
    return ""
