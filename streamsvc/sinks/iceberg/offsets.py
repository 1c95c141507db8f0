"""Source offsets stored in Iceberg tables (BRIEF §3.7).

Every sink commit writes, in one catalog transaction, a snapshot whose summary holds
`streamsvc.offsets.<group>.<topic>` = JSON `{partition: next_offset}` and `streamsvc.commit-id`, and the
same two values as table properties (`streamsvc.commit-id.<group>.<topic>` for the id), so expiring
snapshots cannot lose them. Readers walk the current snapshot's ancestry and fall back to the property
only when that ancestry was cut short by expired snapshots: after a rollback the property may belong to
a snapshot that is no longer in the table's history, and handing it back would skip the records whose
rows the rollback removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of

OFFSETS_PREFIX = "streamsvc.offsets."
COMMIT_ID = "streamsvc.commit-id"
COMMIT_ID_PREFIX = "streamsvc.commit-id."
WRITER = "streamsvc.writer"


def offsets_key(group: str, topic: str) -> str:
    return f"{OFFSETS_PREFIX}{group}.{topic}"


def commit_id_key(group: str, topic: str) -> str:
    return f"{COMMIT_ID_PREFIX}{group}.{topic}"


def encode_offsets(offsets: dict[int, int]) -> str:
    return orjson.dumps({str(p): o for p, o in sorted(offsets.items())}).decode()


def decode_offsets(raw: str) -> dict[int, int]:
    return {int(p): int(o) for p, o in orjson.loads(raw).items()}


@dataclass(frozen=True)
class TableOffsets:
    """The offsets a table holds for one (group, topic), and where they were read from."""

    offsets: dict[int, int]
    commit_id: str | None
    snapshot_id: int | None  # the snapshot that carried them; None when read from the property

    @classmethod
    def empty(cls) -> TableOffsets:
        return cls({}, None, None)


def read_offsets(table: Table, group: str, topic: str) -> TableOffsets:
    """Offsets of `group`/`topic` in `table` as of its current snapshot: from the newest ancestor that
    carries them; else from the property, when it may belong to an expired ancestor (never when the
    whole history is visible, nor when its snapshot is retained but off the current history)."""
    key = offsets_key(group, topic)
    walked: list[Snapshot] = []
    for snap in ancestors_of(table.current_snapshot(), table.metadata):
        summary = snap.summary
        raw = summary[key] if summary is not None else None
        if raw is not None:
            return TableOffsets(
                decode_offsets(raw), summary[COMMIT_ID] if summary else None, snap.snapshot_id
            )
        walked.append(snap)
    raw = table.properties.get(key)
    if raw is None:
        return TableOffsets.empty()
    commit_id = table.properties.get(commit_id_key(group, topic))
    if not _may_be_expired_ancestor(table, walked, commit_id):
        return TableOffsets.empty()
    return TableOffsets(decode_offsets(raw), commit_id, None)


def _may_be_expired_ancestor(table: Table, walked: list[Snapshot], commit_id: str | None) -> bool:
    """Whether the commit that wrote the offsets property can still be part of the current history.

    pyiceberg clears the parent of a snapshot whose parent expired, so a cut history looks complete;
    sequence numbers (increasing along every history) and the snapshot log tell the cases apart."""
    if table.current_snapshot() is None:
        return False  # an empty table holds no rows of anyone
    writer = next(
        (s for s in table.snapshots() if commit_id and s.summary and s.summary[COMMIT_ID] == commit_id), None
    )
    if writer is None:
        return True  # its snapshot expired: the property is the only record left
    seq = writer.sequence_number or 0
    if any((s.sequence_number or 0) < seq for s in walked):
        return False  # the walk went below it without meeting it: not an ancestor
    return not _rolled_back_past(table, writer)


def _rolled_back_past(table: Table, snap: Snapshot) -> bool:
    """True when, after `snap` was last current, the table moved to an older snapshot."""
    log = [entry.snapshot_id for entry in table.metadata.snapshot_log]
    if snap.snapshot_id not in log:
        return False
    after = log[len(log) - 1 - log[::-1].index(snap.snapshot_id) + 1 :]
    by_id = {s.snapshot_id: s for s in table.snapshots()}
    seq = snap.sequence_number or 0
    return any((by_id[i].sequence_number or 0) < seq for i in after if i in by_id)


def find_commit(table: Table, commit_id: str, depth: int = 50) -> bool:
    """True when a snapshot among the newest `depth` ancestors carries `commit_id` (commit outcome check)."""
    for i, snap in enumerate(ancestors_of(table.current_snapshot(), table.metadata)):
        if i >= depth:
            break
        if snap.summary is not None and snap.summary[COMMIT_ID] == commit_id:
            return True
    return False


def offset_properties(group: str, topic: str, offsets: dict[int, int], commit_id: str) -> dict[str, str]:
    """The table properties that mirror a commit's offsets."""
    return {offsets_key(group, topic): encode_offsets(offsets), commit_id_key(group, topic): commit_id}


def all_offset_keys(table: Table) -> set[str]:
    """Every `streamsvc.offsets.*` key found in properties or in any retained snapshot summary."""
    keys = {k for k in table.properties if k.startswith(OFFSETS_PREFIX)}
    for snap in table.snapshots():
        if snap.summary is not None:
            keys |= {k for k in snap.summary.additional_properties if k.startswith(OFFSETS_PREFIX)}
    return keys
