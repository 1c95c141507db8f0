"""Source offsets stored in Iceberg tables (BRIEF §3.7).

Every sink commit writes, in one catalog transaction, a snapshot whose summary holds
`streamsvc.offsets.<group>.<topic>` = JSON `{partition: next_offset}` and `streamsvc.commit-id`, and the
same two values as table properties (`streamsvc.commit-id.<group>.<topic>` for the id), so expiring
snapshots cannot lose them. Readers walk the current snapshot's ancestry and fall back to the property.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

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
    """Offsets of `group`/`topic` in `table` as of its current snapshot (ancestry first, then property)."""
    key = offsets_key(group, topic)
    for snap in ancestors_of(table.current_snapshot(), table.metadata):
        summary = snap.summary
        raw = summary[key] if summary is not None else None
        if raw is not None:
            return TableOffsets(
                decode_offsets(raw), summary[COMMIT_ID] if summary else None, snap.snapshot_id
            )
    raw = table.properties.get(key)
    if raw is None:
        return TableOffsets.empty()
    return TableOffsets(decode_offsets(raw), table.properties.get(commit_id_key(group, topic)), None)


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
