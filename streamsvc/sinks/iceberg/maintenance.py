"""Table maintenance for sink tables: expire snapshots, merge manifests, compact small files, sweep orphans.

Commit latency grows with the number of snapshots and manifests (BRIEF §3.7), so long-running sinks need
this regularly. Offsets survive: they are mirrored in table properties, the newest snapshot carrying each
`streamsvc.offsets.*` key is never expired, and the manifest-merge and compaction snapshots copy the
`streamsvc.*` summary keys of the head they are built on. Every step commits against a moving head (a
running sink) and retries with backoff until one deadline for the whole run: expiry re-plans on a
refreshed table (`retry.until_deadline`); the manifest merge and compaction do their heavy work once and
re-base only a manifest list on each new head (`replace.py`), so an attempt fits between two commits of
a sink that commits every 0.5 s.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from pyarrow import fs as pafs
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import ManifestContent
from pyiceberg.table import Table, Transaction
from pyiceberg.table.snapshots import ancestors_of

from streamsvc.faults import FaultHook, no_faults
from streamsvc.sinks.iceberg.compaction import (
    DEFAULT_MIN_INPUT_FILES,
    CompactionReport,
    carried_summary,
    compact,
)
from streamsvc.sinks.iceberg.offsets import OFFSETS_PREFIX
from streamsvc.sinks.iceberg.replace import RebaseCache, commit_rebased
from streamsvc.sinks.iceberg.replace import merge_manifests as stage_merge
from streamsvc.sinks.iceberg.retry import until_deadline
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec

DEFAULT_DEADLINE_S = 300.0
IN_AGENT_DEADLINE_S = 60.0


@dataclass
class MaintenanceReport:
    """What one `maintain` run did (or would do, with `dry_run`)."""

    snapshots_before: int = 0
    snapshots_expired: list[int] = field(default_factory=list)
    manifests_before: int = 0
    manifests_after: int = 0
    compaction: CompactionReport | None = None
    orphans_deleted: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # commit attempts per step
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def maintain(
    table: Table,
    older_than: timedelta = timedelta(hours=24),
    retain_last: int = 10,
    merge: bool = True,
    orphans_older_than: timedelta | None = timedelta(hours=72),
    dry_run: bool = False,
    compact_files: bool = False,
    target_file_size: int | None = None,
    min_input_files: int = DEFAULT_MIN_INPUT_FILES,
    deadline_s: float = DEFAULT_DEADLINE_S,
    faults: FaultHook = no_faults,
) -> MaintenanceReport:
    """Expire, merge manifests, compact small files (`compact_files`), then sweep orphans.

    Every committing step re-plans and retries on a concurrent commit until `deadline_s` after the start
    (then `retry.MaintenanceTimeout`). Compaction runs after the manifest merge (fewer manifests to rewrite
    per attempt) and before the sweep; `dry_run` only reports expiry and orphans."""
    started = time.monotonic()
    deadline = started + deadline_s
    report = MaintenanceReport(snapshots_before=len(table.snapshots()))
    report.snapshots_expired, report.attempts["expire"] = until_deadline(
        lambda: expire_snapshots(table, older_than, retain_last, dry_run), deadline, "expire snapshots"
    )
    report.manifests_before = _manifest_count(table)
    if merge and not dry_run:
        report.attempts["merge"] = merge_manifests(table, deadline)
    if compact_files and not dry_run:
        report.compaction = compact(table, deadline, target_file_size, min_input_files, faults)
        report.attempts["compact"] = report.compaction.attempts
    report.manifests_after = _manifest_count(table)
    if orphans_older_than is not None:
        report.orphans_deleted = sweep_orphans(table, orphans_older_than, dry_run)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def maintain_in_agent(table: Table, spec: IcebergSinkSpec) -> MaintenanceReport:
    """The sink agent's periodic maintenance (`maintain_every_commits`): expire + merge manifests, and
    compaction when `spec.maintain_compact`; no orphan sweep (files of other writers' commits in flight)."""
    return maintain(
        table,
        older_than=timedelta(seconds=spec.maintain_older_than_s),
        retain_last=spec.maintain_retain_last,
        orphans_older_than=None,
        compact_files=spec.maintain_compact,
        deadline_s=IN_AGENT_DEADLINE_S,
    )


def expire_snapshots(
    table: Table, older_than: timedelta, retain_last: int, dry_run: bool = False
) -> list[int]:
    """Expire snapshots older than `older_than`, keeping the newest `retain_last` of the current ancestry
    and the newest snapshot that carries each offsets key."""
    table.refresh()
    cutoff_ms = int((datetime.now(UTC) - older_than).timestamp() * 1000)
    keep: set[int] = set()
    seen_keys: set[str] = set()
    for i, snap in enumerate(ancestors_of(table.current_snapshot(), table.metadata)):
        if i < retain_last:
            keep.add(snap.snapshot_id)
        keys = {
            k
            for k in (snap.summary.additional_properties if snap.summary else {})
            if k.startswith(OFFSETS_PREFIX)
        }
        if keys - seen_keys:
            keep.add(snap.snapshot_id)
            seen_keys |= keys
    keep |= {ref.snapshot_id for ref in table.metadata.refs.values()}
    doomed = [
        s.snapshot_id for s in table.snapshots() if s.snapshot_id not in keep and s.timestamp_ms < cutoff_ms
    ]
    if doomed and not dry_run:
        table.maintenance.expire_snapshots().by_ids(doomed).commit()
    return doomed


def merge_manifests(table: Table, deadline: float) -> int:
    """Rewrite the current snapshot's data manifests into few, in one `replace` snapshot that copies the
    head's `streamsvc.*` summary keys (`replace.MergeManifests`); returns the commit attempts (0: nothing
    to merge)."""
    table.refresh()
    if table.current_snapshot() is None or _manifest_count(table) < 2:
        return 0
    cache = RebaseCache()

    def stage(txn: Transaction) -> None:
        stage_merge(txn, cache, carried_summary(table.current_snapshot()))

    return commit_rebased(table, stage, cache, deadline, "merge manifests")


def _manifest_count(table: Table) -> int:
    snap = table.current_snapshot()
    return 0 if snap is None else len(snap.manifests(table.io))


def referenced_files(table: Table) -> set[str]:
    """Every file some retained snapshot or metadata version points at. Data files count when a retained
    snapshot still reads them (an entry marked deleted by a replace or overwrite does not keep its file:
    any retained snapshot that reads the file lists it as added or existing)."""
    refs = {table.metadata_location, *(e.metadata_file for e in table.metadata.metadata_log)}
    refs |= {s.statistics_path for s in table.metadata.statistics}
    for snap in table.snapshots():
        refs.add(snap.manifest_list)
        for manifest in snap.manifests(table.io):
            refs.add(manifest.manifest_path)
            if manifest.content == ManifestContent.DATA or manifest.content == ManifestContent.DELETES:
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                    refs.add(entry.data_file.file_path)
    return {_path(r) for r in refs}


def sweep_orphans(table: Table, older_than: timedelta, dry_run: bool = False) -> list[str]:
    """Delete files under the table location that nothing references and that are older than
    `older_than` (young files may belong to a commit in flight)."""
    table.refresh()
    filesystem, root = table_filesystem(table)
    referenced = referenced_files(table)
    cutoff = datetime.now(UTC) - older_than
    doomed: list[str] = []
    for info in filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File or _path(info.path) in referenced:
            continue
        mtime = info.mtime
        if mtime is not None and mtime.replace(tzinfo=mtime.tzinfo or UTC) < cutoff:
            doomed.append(info.path)
    if not dry_run:
        for path in doomed:
            filesystem.delete_file(path)
    return sorted(doomed)


def table_filesystem(table: Table) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system of the table's location, configured like the table's FileIO (an S3 endpoint
    and credentials from the catalog properties), and the location's path in it."""
    if isinstance(table.io, PyArrowFileIO):
        scheme, netloc, path = PyArrowFileIO.parse_location(table.location(), table.io.properties)
        return table.io.fs_by_scheme(scheme, netloc), path
    return pafs.FileSystem.from_uri(table.location())  # type: ignore[no-any-return]


def _path(location: str) -> str:
    """A location without its scheme/authority, as pyarrow file systems list it."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return parsed.path
    return f"{parsed.netloc}{parsed.path}"
