"""The offsets a table hands back never run ahead of its rows: after a rollback the mirrored property
(written by a commit that is no longer in the history) is ignored; after snapshots expired it still
stands in for them. Pure Iceberg (SQLite catalog), no Kafka."""

from __future__ import annotations

from pathlib import Path

from pyiceberg.table import Table
from pyiceberg.table.update.snapshot import ManageSnapshots

from streamsvc.sinks.iceberg.offsets import offsets_key, read_offsets
from streamsvc.sinks.iceberg.rows import meta_schema
from streamsvc.sinks.iceberg.writer import TableWriter
from tests.sinks.support import sqlite_catalog

GROUP, TOPIC = "app.sink", "events"


def _writer(tmp: Path) -> TableWriter:
    _, catalog = sqlite_catalog(tmp)
    return TableWriter(catalog, "ns.events", GROUP, TOPIC, writer_id="w")


def _commit(writer: TableWriter, expected: int | None, to: int) -> Table:
    assert writer.commit(meta_schema(False).empty_table(), {0: to}, {0: expected}).committed
    table = writer.table
    assert table is not None
    return table


def _foreign_append(table: Table) -> None:
    """A snapshot by someone else (no streamsvc offsets in its summary)."""
    table.append(meta_schema(False).empty_table())


def test_rollback_to_an_ancestor_reads_its_offsets(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    table = _commit(writer, None, 5)
    first = table.current_snapshot()
    assert first is not None
    _commit(writer, 5, 10)
    table.manage_snapshots().rollback_to_snapshot(first.snapshot_id).commit()
    assert table.properties[offsets_key(GROUP, TOPIC)] == '{"0":10}'  # the property ran ahead
    assert read_offsets(table, GROUP, TOPIC).offsets == {0: 5}


def test_rollback_before_the_first_commit_reads_no_offsets(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    table = _commit(writer, None, 5)
    _commit(writer, 5, 10)
    # Back to the empty table (no current snapshot): its rows hold nothing of the group.
    txn = table.transaction()
    ManageSnapshots(txn).remove_branch("main").commit()
    txn.commit_transaction()
    assert table.current_snapshot() is None
    assert read_offsets(table, GROUP, TOPIC).offsets == {}


def test_rollback_to_a_foreign_snapshot_before_the_first_commit_reads_no_offsets(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.ensure(meta_schema(False))
    assert writer.table is not None
    _foreign_append(writer.table)
    table = writer.table
    before = table.current_snapshot()
    assert before is not None
    _commit(writer, None, 7)
    table.manage_snapshots().rollback_to_snapshot(before.snapshot_id).commit()
    assert read_offsets(table, GROUP, TOPIC).offsets == {}


def test_property_stands_in_for_expired_snapshots(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    table = _commit(writer, None, 5)
    ours = table.current_snapshot()
    assert ours is not None
    _foreign_append(table)
    middle = table.current_snapshot()
    _foreign_append(table)
    assert middle is not None
    table.maintenance.expire_snapshots().by_ids([ours.snapshot_id, middle.snapshot_id]).commit()
    held = read_offsets(table, GROUP, TOPIC)
    assert held.offsets == {0: 5} and held.snapshot_id is None  # from the property


def test_property_of_a_retained_snapshot_off_the_history_is_ignored(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.ensure(meta_schema(False))
    table = writer.table
    assert table is not None
    _foreign_append(table)
    oldest = table.current_snapshot()
    _foreign_append(table)
    base = table.current_snapshot()
    assert oldest is not None and base is not None
    _commit(writer, None, 5)  # retained, but rolled back below
    table.manage_snapshots().rollback_to_snapshot(base.snapshot_id).commit()
    _foreign_append(table)
    table.maintenance.expire_snapshots().by_ids([oldest.snapshot_id]).commit()
    # The history is cut below `base`, and our commit is newer than `base` without being on the path.
    assert read_offsets(table, GROUP, TOPIC).offsets == {}


def test_a_rollback_seen_in_the_snapshot_log_voids_the_property(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.ensure(meta_schema(False))
    table = writer.table
    assert table is not None
    _foreign_append(table)
    base = table.current_snapshot()
    assert base is not None
    _commit(writer, None, 5)
    table.manage_snapshots().rollback_to_snapshot(base.snapshot_id).commit()
    _foreign_append(table)
    cut = table.current_snapshot()
    _foreign_append(table)
    _foreign_append(table)
    assert cut is not None
    # Only the first snapshot after the rollback expires: the walk stops above `base`.
    table.maintenance.expire_snapshots().by_ids([cut.snapshot_id]).commit()
    assert read_offsets(table, GROUP, TOPIC).offsets == {}
