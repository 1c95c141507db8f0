"""Small-file compaction: rewrite a partition's small data files into target-size files in one commit.

A sink that commits every second writes one file per table partition per commit. Compaction plans from
the current snapshot: per partition, the data files below `SMALL_FRACTION` of the table's
`write.target-file-size-bytes` (files with delete files are left alone) are packed, in manifest order, into
bins of at most the target size; each bin of two or more files is read (projected onto the current
schema), sorted by Kafka partition and offset when those columns exist, and written as one new file.

The rewrite is then committed as ONE `replace` snapshot (`replace.py`: rows unchanged, so engines'
incremental readers skip it), built so that an attempt is cheap to re-base on a new head. It carries
the head's `streamsvc.*` summary keys (offsets, commit id, writer, silver merge position), so the sink's
fence and a silver merge read exactly what they read before. Like every commit it asserts the branch head
it was built on: a concurrent sink commit makes it fail, and the commit alone (not the rewrite) is retried
on the new head, with the head's new offsets, until the deadline; input files that another commit removed
meanwhile (a silver merge, another compaction) drop their group. Files written by a killed or abandoned
attempt are orphans that nothing references; the orphan sweep removes them.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from pyiceberg.exceptions import ValidationException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile, DataFileContent
from pyiceberg.table import FileScanTask, Table, TableProperties, Transaction
from pyiceberg.table.snapshots import Snapshot

from streamsvc.faults import FaultHook, no_faults
from streamsvc.sinks.iceberg.replace import RebaseCache, commit_rebased, replace_files
from streamsvc.sinks.iceberg.retry import MaintenanceTimeout

SMALL_FRACTION = 0.75  # like Iceberg's rewrite_data_files min-file-size-bytes default
DEFAULT_MIN_INPUT_FILES = 5
SORT_COLUMNS = ("_kafka_partition", "_kafka_offset")
CARRIED_PREFIX = "streamsvc."


@dataclass(frozen=True)
class FileGroup:
    """Small files of one partition that become one new file."""

    spec_id: int
    partition: tuple[Any, ...]
    files: tuple[DataFile, ...]

    @property
    def size_bytes(self) -> int:
        return sum(f.file_size_in_bytes for f in self.files)


@dataclass
class CompactionReport:
    """What one compaction did; `files_before`/`files_after` count the live data files."""

    committed: bool = False
    snapshot_id: int | None = None
    files_before: int = 0
    files_after: int = 0
    rewritten_files: int = 0
    added_files: int = 0
    rewritten_bytes: int = 0
    rows: int = 0
    groups: int = 0
    skipped_with_deletes: int = 0
    attempts: int = 0
    plans: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Plan:
    groups: list[FileGroup] = field(default_factory=list)
    live_files: int = 0
    skipped_with_deletes: int = 0


def target_file_size(table: Table) -> int:
    raw = table.properties.get(TableProperties.WRITE_TARGET_FILE_SIZE_BYTES)
    return int(raw) if raw else int(TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT)


def plan(table: Table, target_bytes: int, min_input_files: int = DEFAULT_MIN_INPUT_FILES) -> _Plan:
    """Groups of small files to rewrite, from the current snapshot."""
    out = _Plan()
    snap = table.current_snapshot()
    if snap is None:
        return out
    small: dict[tuple[int, tuple[Any, ...]], list[DataFile]] = defaultdict(list)
    for task in table.scan(snapshot_id=snap.snapshot_id).plan_files():
        out.live_files += 1
        f = task.file
        if task.delete_files:
            out.skipped_with_deletes += 1
        elif f.content == DataFileContent.DATA and f.file_size_in_bytes < SMALL_FRACTION * target_bytes:
            small[(f.spec_id, tuple(f.partition[i] for i in range(len(f.partition))))].append(f)
    for (spec_id, partition), files in small.items():
        if len(files) < max(2, min_input_files):
            continue
        current: list[DataFile] = []
        for f in files:
            if current and sum(c.file_size_in_bytes for c in current) + f.file_size_in_bytes > target_bytes:
                out.groups += _group(spec_id, partition, current)
                current = []
            current.append(f)
        out.groups += _group(spec_id, partition, current)
    return out


def _group(spec_id: int, partition: tuple[Any, ...], files: list[DataFile]) -> list[FileGroup]:
    return [FileGroup(spec_id, partition, tuple(files))] if len(files) >= 2 else []


def rewrite(table: Table, group: FileGroup) -> tuple[list[DataFile], int]:
    """Write `group`'s rows as one new file (per partition of the current spec); (files, rows)."""
    schema = table.schema()
    rows = ArrowScan(table.metadata, table.io, schema, AlwaysTrue()).to_table(
        [FileScanTask(f) for f in group.files]
    )
    keys = [(c, "ascending") for c in SORT_COLUMNS if c in rows.column_names]
    if keys:
        rows = rows.sort_by(keys)
    rows = rows.cast(schema.as_arrow()) if rows.schema != schema.as_arrow() else rows
    # One output file per group: pyiceberg's writer would split by Arrow (in-memory) size, which is several
    # times the Parquet size the group was packed by.
    one_file = {**table.properties, TableProperties.WRITE_TARGET_FILE_SIZE_BYTES: str(1 << 62)}
    metadata = table.metadata.model_copy(update={"properties": one_file})
    files = list(_dataframe_to_data_files(metadata, rows.combine_chunks(), table.io, write_uuid=uuid.uuid4()))
    return files, rows.num_rows


def carried_summary(snap: Snapshot | None) -> dict[str, str]:
    """The head's `streamsvc.*` summary keys, copied so readers of the new head see the same state."""
    if snap is None or snap.summary is None:
        return {}
    return {k: v for k, v in snap.summary.additional_properties.items() if k.startswith(CARRIED_PREFIX)}


def compact(
    table: Table,
    deadline: float,
    target_bytes: int | None = None,
    min_input_files: int = DEFAULT_MIN_INPUT_FILES,
    faults: FaultHook = no_faults,
) -> CompactionReport:
    """Plan, rewrite and commit small files until done or `deadline` (time.monotonic) passes."""
    report = CompactionReport()
    table.refresh()
    target = target_bytes or target_file_size(table)
    todo = plan(table, target, min_input_files)
    report.plans, report.files_before = 1, todo.live_files
    report.skipped_with_deletes = todo.skipped_with_deletes
    if not todo.groups:
        report.files_after = todo.live_files
        return report
    written: dict[FileGroup, list[DataFile]] = {}
    for group in todo.groups:
        written[group], rows = rewrite(table, group)
        report.rows += rows
    faults("compact_after_write")
    cache = RebaseCache()
    while True:
        groups = list(written)
        old = [f for g in groups for f in g.files]
        new = [f for g in groups for f in written[g]]
        stage = functools.partial(_stage_replace, table, cache, old, new)
        try:
            report.attempts += commit_rebased(table, stage, cache, deadline, "compact")
        except MaintenanceTimeout:
            _delete(table, new)
            raise
        except ValidationException:  # some input files are gone: drop their groups, keep the rest
            report.attempts += 1
            table.refresh()
            live = _live_paths(table)
            for g in groups:
                if not all(f.file_path in live for f in g.files):
                    _delete(table, written.pop(g))
            cache = RebaseCache()
            if not written:
                report.files_after = len(live)
                return report
            continue
        faults("compact_after_commit")
        table.refresh()
        report.committed = True
        report.snapshot_id = cache.snapshot_id
        report.groups = len(groups)
        report.rewritten_files = len(old)
        report.added_files = len(new)
        report.rewritten_bytes = sum(f.file_size_in_bytes for f in old)
        report.files_after = len(_live_paths(table))
        return report


def _stage_replace(
    table: Table, cache: RebaseCache, old: list[DataFile], new: list[DataFile], txn: Transaction
) -> None:
    replace_files(txn, cache, old, new, carried_summary(table.current_snapshot()))


def _live_paths(table: Table) -> set[str]:
    snap = table.current_snapshot()
    if snap is None:
        return set()
    return {t.file.file_path for t in table.scan(snapshot_id=snap.snapshot_id).plan_files()}


def _delete(table: Table, files: list[DataFile]) -> None:
    """Remove files an abandoned attempt wrote (best effort; the orphan sweep catches the rest)."""
    for f in files:
        with contextlib.suppress(Exception):  # never fail the run over cleanup
            table.io.delete(f.file_path)
