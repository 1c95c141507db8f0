"""Table maintenance for sink tables: expire snapshots, merge manifests, sweep orphan files.

Commit latency grows with the number of snapshots and manifests (BRIEF §3.7), so long-running sinks need
this regularly. Offsets survive: they are mirrored in table properties, the newest snapshot carrying each
`streamsvc.offsets.*` key is never expired, and the manifest-merge snapshot copies the offsets of the
snapshot it replaces as head.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from pyarrow import fs as pafs
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import ManifestContent
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from streamsvc.sinks.iceberg.offsets import COMMIT_ID, OFFSETS_PREFIX, WRITER


@dataclass
class MaintenanceReport:
    """What one `maintain` run did (or would do, with `dry_run`)."""

    snapshots_before: int = 0
    snapshots_expired: list[int] = field(default_factory=list)
    manifests_before: int = 0
    manifests_after: int = 0
    orphans_deleted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def maintain(
    table: Table,
    older_than: timedelta = timedelta(hours=24),
    retain_last: int = 10,
    merge: bool = True,
    orphans_older_than: timedelta | None = timedelta(hours=72),
    dry_run: bool = False,
) -> MaintenanceReport:
    """Expire, merge, then sweep orphans; each step retries on a concurrent commit."""
    report = MaintenanceReport(snapshots_before=len(table.snapshots()))
    report.snapshots_expired = _retry(lambda: expire_snapshots(table, older_than, retain_last, dry_run))
    report.manifests_before = _manifest_count(table)
    if merge and not dry_run:
        _retry(lambda: merge_manifests(table))
    report.manifests_after = _manifest_count(table)
    if orphans_older_than is not None:
        report.orphans_deleted = sweep_orphans(table, orphans_older_than, dry_run)
    return report


def _retry(fn: Any, attempts: int = 10) -> Any:
    for attempt in range(attempts):
        try:
            return fn()
        except CommitFailedException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return None


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


def merge_manifests(table: Table) -> None:
    """Rewrite the current snapshot's data manifests into as few as the target size allows.

    pyiceberg has no rewrite-manifests action; a merge-append with no new files and the merge threshold
    lowered inside the same transaction does the job. The new snapshot copies the head's offsets."""
    table.refresh()
    snap = table.current_snapshot()
    if snap is None or _manifest_count(table) < 2:
        return
    carried = {
        k: v
        for k, v in (snap.summary.additional_properties if snap.summary else {}).items()
        if k.startswith(OFFSETS_PREFIX) or k in (COMMIT_ID, WRITER)
    }
    old = table.properties.get("commit.manifest.min-count-to-merge")
    with table.transaction() as txn:
        txn.set_properties({"commit.manifest.min-count-to-merge": "2"})
        with txn.update_snapshot(snapshot_properties=carried).merge_append():
            pass
        if old is None:
            txn.remove_properties("commit.manifest.min-count-to-merge")
        else:
            txn.set_properties({"commit.manifest.min-count-to-merge": old})


def _manifest_count(table: Table) -> int:
    snap = table.current_snapshot()
    return 0 if snap is None else len(snap.manifests(table.io))


def referenced_files(table: Table) -> set[str]:
    """Every file some retained snapshot or metadata version points at."""
    refs = {table.metadata_location, *(e.metadata_file for e in table.metadata.metadata_log)}
    refs |= {s.statistics_path for s in table.metadata.statistics}
    for snap in table.snapshots():
        refs.add(snap.manifest_list)
        for manifest in snap.manifests(table.io):
            refs.add(manifest.manifest_path)
            if manifest.content == ManifestContent.DATA or manifest.content == ManifestContent.DELETES:
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                    refs.add(entry.data_file.file_path)
    return {_path(r) for r in refs}


def sweep_orphans(table: Table, older_than: timedelta, dry_run: bool = False) -> list[str]:
    """Delete files under the table location that nothing references and that are older than
    `older_than` (young files may belong to a commit in flight)."""
    table.refresh()
    filesystem, root = pafs.FileSystem.from_uri(table.location())
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


def _path(location: str) -> str:
    """A location without its scheme/authority, as pyarrow file systems list it."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return parsed.path
    return f"{parsed.netloc}{parsed.path}"
