"""`replace` snapshots (files or manifests rewritten, rows unchanged), cheap to re-base onto a moving head.

pyiceberg 0.12 writes append, overwrite and delete snapshots and refuses `replace` in its summary code,
and its overwrite re-reads every manifest of the head on each attempt. Next to a sink that commits every
0.5 s, an attempt that takes longer than the gap between two sink commits never lands (over REST + S3 it
did not, in 61 attempts). `ReplaceFiles` is pyiceberg's overwrite producer with two changes:

- its summary says `replace` (the totals are the overwrite's: same rows removed and added);
- a `RebaseCache` shared by all attempts of one rewrite keeps what does not change between them: the
  snapshot id (stable across attempts, as pyiceberg's own retry does, so rewritten manifests stay valid),
  each head manifest already examined (kept as it is, dropped, or rewritten without the replaced files,
  written once), and the sequence numbers of the replaced files. A manifest that appeared since the last
  attempt and only holds added files (a sink's append) is kept unread. If a manifest that held replaced
  files has left the head (someone rewrote manifests), everything is examined again; a replaced file that
  is no longer live fails the attempt with `ValidationException`.
So an attempt reads one manifest list and writes three small files before the catalog commit.

`MergeManifests` does the same for a manifest rewrite (pyiceberg has no rewrite-manifests action): the
data manifests of the head it first sees are merged once into manifests of at most
`MERGED_MANIFEST_ENTRIES` entries; each attempt lists those plus whatever manifests appeared since, and
examines again only if one of the merged manifests has left the head.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException, ValidationException
from pyiceberg.manifest import (
    DataFile,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    write_manifest,
)
from pyiceberg.table import Table, Transaction
from pyiceberg.table.snapshots import Operation, Summary
from pyiceberg.table.update.snapshot import _FastAppendFiles, _OverwriteFiles
from pyiceberg.typedef import EMPTY_DICT

from streamsvc.sinks.iceberg.retry import MaintenanceTimeout, backoff

MERGED_MANIFEST_ENTRIES = 20_000


@dataclass
class RebaseCache:
    """What the attempts of one rewrite share (see the module docstring)."""

    snapshot_id: int | None = None
    manifests: dict[str, ManifestFile | None] = field(default_factory=dict)  # head path -> replacement
    holders: set[str] = field(default_factory=set)  # head manifests that held replaced files
    sequence: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # file -> seq numbers

    merged_from: set[str] = field(default_factory=set)  # MergeManifests: the manifests it merged
    merged: list[ManifestFile] = field(default_factory=list)

    def reset(self) -> None:
        self.merged_from.clear()
        self.merged.clear()
        self.manifests.clear()
        self.holders.clear()
        self.sequence.clear()


class _Rebased:
    """Mixin for pyiceberg snapshot producers: a `replace` summary (the base class computes the totals
    under `_base_operation`, which its summary code accepts) and a snapshot id kept in the cache."""

    _base_operation: Operation
    _snapshot_id: int

    def __init__(
        self, transaction: Transaction, cache: RebaseCache, snapshot_properties: dict[str, str]
    ) -> None:
        super().__init__(  # type: ignore[call-arg]
            operation=self._base_operation,
            transaction=transaction,
            io=transaction._table.io,
            snapshot_properties=snapshot_properties,
        )
        self._cache = cache
        if cache.snapshot_id is None:
            cache.snapshot_id = self._snapshot_id
        self._snapshot_id = cache.snapshot_id

    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        summary: Summary = super()._summary(snapshot_properties)  # type: ignore[misc]
        return Summary(Operation.REPLACE, **summary.additional_properties)


class ReplaceFiles(_Rebased, _OverwriteFiles):
    """Remove `delete_data_file` files and add `append_data_file` files in one `replace` snapshot."""

    _base_operation = Operation.OVERWRITE
    _kept: list[ManifestFile]

    def _deleted_entries(self) -> list[ManifestEntry]:
        """Called once per attempt before the manifests are written: examines the head (cached)."""
        self._kept = self._examine_head()
        return [
            ManifestEntry.from_args(
                status=ManifestEntryStatus.DELETED,
                snapshot_id=self._snapshot_id,
                sequence_number=self._cache.sequence[f.file_path][0],
                file_sequence_number=self._cache.sequence[f.file_path][1],
                data_file=f,
            )
            for f in self._deleted_data_files
        ]

    def _existing_manifests(self) -> list[ManifestFile]:
        return self._kept  # computed by `_deleted_entries`, which pyiceberg calls first

    def _examine_head(self) -> list[ManifestFile]:
        head = self._transaction.table_metadata.snapshot_by_name(self._target_branch)
        current = head.manifests(self._io) if head is not None else []
        if not self._cache.holders <= {m.manifest_path for m in current}:
            self._cache.reset()
        seen_before = bool(self._cache.manifests)
        kept: list[ManifestFile] = []
        for manifest in current:
            if manifest.manifest_path in self._cache.manifests:
                replacement = self._cache.manifests[manifest.manifest_path]
            elif seen_before and _only_added(manifest):
                replacement = manifest  # a new append: cannot hold files that were live before it
            else:
                replacement = self._without_replaced(manifest)
                self._cache.manifests[manifest.manifest_path] = replacement
            if replacement is not None:
                kept.append(replacement)
        known = self._cache.sequence
        missing = sorted(f.file_path for f in self._deleted_data_files if f.file_path not in known)
        if missing:
            raise ValidationException(f"files to replace are no longer live: {', '.join(missing[:5])}")
        return kept

    def _without_replaced(self, manifest: ManifestFile) -> ManifestFile | None:
        """`manifest` itself when it holds no replaced file, None when it holds only those, else a
        rewritten copy (written outside pyiceberg's per-attempt cleanup, so later attempts reuse it)."""
        replaced = self._deleted_data_files
        entries = manifest.fetch_manifest_entry(self._io, discard_deleted=True)
        hits = [e for e in entries if e.data_file in replaced]
        if not hits:
            return manifest
        self._cache.holders.add(manifest.manifest_path)
        for e in hits:
            self._cache.sequence[e.data_file.file_path] = (e.sequence_number, e.file_sequence_number)
        rest = [e for e in entries if e.data_file not in replaced]
        if not rest:
            return None
        return _new_manifest(self, manifest.partition_spec_id, rest)


def _new_manifest(
    producer: _FastAppendFiles | ReplaceFiles, spec_id: int, entries: list[ManifestEntry]
) -> ManifestFile:
    """A manifest of `entries` as EXISTING, written outside pyiceberg's per-attempt cleanup."""
    txn = producer._transaction
    location = txn._table.location_provider().new_metadata_location(f"{uuid.uuid4()}-m-replace.avro")
    with write_manifest(
        format_version=txn.table_metadata.format_version,
        spec=producer.spec(spec_id),
        schema=producer.schema(),
        output_file=producer._io.new_output(location),
        snapshot_id=producer._snapshot_id,
        avro_compression=producer._compression,
    ) as writer:
        for e in entries:
            writer.add_entry(
                ManifestEntry.from_args(
                    status=ManifestEntryStatus.EXISTING,
                    snapshot_id=e.snapshot_id,
                    sequence_number=e.sequence_number,
                    file_sequence_number=e.file_sequence_number,
                    data_file=e.data_file,
                )
            )
    return writer.to_manifest_file()


class MergeManifests(_Rebased, _FastAppendFiles):
    """Rewrite the head's data manifests into few (no data change) in one `replace` snapshot."""

    _base_operation = Operation.APPEND

    def _existing_manifests(self) -> list[ManifestFile]:
        head = self._transaction.table_metadata.snapshot_by_name(self._target_branch)
        current = head.manifests(self._io) if head is not None else []
        paths = {m.manifest_path for m in current}
        if not self._cache.merged_from or not self._cache.merged_from <= paths:
            self._cache.reset()
            self._merge([m for m in current if m.content == ManifestContent.DATA])
        return self._cache.merged + [m for m in current if m.manifest_path not in self._cache.merged_from]

    def _merge(self, manifests: list[ManifestFile]) -> None:
        by_spec: dict[int, list[ManifestEntry]] = {}
        for manifest in manifests:
            by_spec.setdefault(manifest.partition_spec_id, []).extend(
                manifest.fetch_manifest_entry(self._io, discard_deleted=True)
            )
        for spec_id, entries in by_spec.items():
            for i in range(0, len(entries), MERGED_MANIFEST_ENTRIES):
                self._cache.merged.append(
                    _new_manifest(self, spec_id, entries[i : i + MERGED_MANIFEST_ENTRIES])
                )
        self._cache.merged_from = {m.manifest_path for m in manifests}


def _only_added(manifest: ManifestFile) -> bool:
    return (
        manifest.content == ManifestContent.DATA
        and manifest.existing_files_count == 0
        and manifest.deleted_files_count == 0
    )


def replace_files(
    transaction: Transaction,
    cache: RebaseCache,
    old: list[DataFile],
    new: list[DataFile],
    snapshot_properties: dict[str, str],
) -> None:
    """Stage the replace snapshot in `transaction` (commit it with `commit_transaction`)."""
    producer = ReplaceFiles(transaction, cache, snapshot_properties)
    for f in old:
        producer.delete_data_file(f)
    for f in new:
        producer.append_data_file(f)
    producer.commit()


def merge_manifests(
    transaction: Transaction, cache: RebaseCache, snapshot_properties: dict[str, str]
) -> None:
    """Stage a manifest rewrite in `transaction` (commit it with `commit_transaction`)."""
    MergeManifests(transaction, cache, snapshot_properties).commit()


def commit_rebased(
    table: Table, stage: Callable[[Transaction], None], cache: RebaseCache, deadline: float, what: str
) -> int:
    """Stage on a fresh transaction and commit until it lands or `deadline` passes; the attempts taken.

    `stage` builds the snapshot on the table's current head (with `cache`, so a retry is cheap). A
    `ValidationException` from it (the plan is stale) is the caller's to handle."""
    attempt = 0
    while True:
        attempt += 1
        txn = table.transaction()
        try:
            stage(txn)
            txn.commit_transaction()
            return attempt
        except CommitFailedException as exc:
            wait = backoff(attempt)
            if time.monotonic() + wait > deadline:
                raise MaintenanceTimeout(f"{what}: not committed after {attempt} attempts: {exc}") from exc
            time.sleep(wait)
            table.refresh()
        except CommitStateUnknownException:
            table.refresh()
            if cache.snapshot_id is not None and table.metadata.snapshot_by_id(cache.snapshot_id) is not None:
                return attempt
