"""Debezium change events: JSON with or without the `schema`/`payload` wrapper, or Avro via the registry.

All three encodings of the same event decode to equal `ChangeRecord`s. A Kafka null value (the tombstone
Debezium writes after a delete, for log compaction) is a record with op `tombstone`, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamsvc.errors import MalformedPayloadError
from streamsvc.serde.base import Serde, SerdeContext
from streamsvc.serde.json import JsonSerde

OPS = frozenset({"c", "u", "d", "r", "t", "m"})
TOMBSTONE = "tombstone"
_WRAPPER_KEYS = frozenset({"schema", "payload"})


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One Debezium change event.

    `op`: c(reate), u(pdate), d(elete), r(ead, snapshot), t(runcate), m(essage), or `tombstone` for a
    Kafka null value. `position` is the source log position: `{"lsn": ...}` (PostgreSQL) or
    `{"file": ..., "pos": ...}` (MySQL binlog), empty when the source has neither.
    """

    op: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    ts_ms: int | None = None
    source_ts_ms: int | None = None
    position: dict[str, Any] = field(default_factory=dict)

    @property
    def row(self) -> dict[str, Any] | None:
        """The row this event leaves behind or removes: `after` for c/u/r, `before` for d, else None."""
        if self.op in ("c", "u", "r"):
            return self.after
        if self.op == "d":
            return self.before
        return None

    @property
    def is_delete(self) -> bool:
        """True for deletes and tombstones (both remove the key from a table)."""
        return self.op == "d" or self.op == TOMBSTONE

    def to_envelope(self) -> dict[str, Any] | None:
        """The bare Debezium envelope (None for a tombstone)."""
        if self.op == TOMBSTONE:
            return None
        return {
            "before": self.before,
            "after": self.after,
            "source": self.source,
            "op": self.op,
            "ts_ms": self.ts_ms,
        }

    @classmethod
    def from_envelope(cls, envelope: Any) -> ChangeRecord:
        """Build from a decoded bare envelope (None is a tombstone); raises MalformedPayloadError."""
        if envelope is None:
            return cls(op=TOMBSTONE)
        if not isinstance(envelope, dict):
            raise MalformedPayloadError(f"Debezium envelope must be an object, got {type(envelope).__name__}")
        op = envelope.get("op")
        if not isinstance(op, str) or op not in OPS:
            raise MalformedPayloadError(
                "Debezium envelope has no `op` field"
                if op is None
                else f"Debezium envelope has unknown op {op!r} (expected one of c, u, d, r, t, m)"
            )
        before = _optional_dict(envelope, "before")
        after = _optional_dict(envelope, "after")
        source = _optional_dict(envelope, "source") or {}
        return cls(
            op=op,
            before=before,
            after=after,
            source=source,
            ts_ms=_optional_int(envelope, "ts_ms"),
            source_ts_ms=_optional_int(source, "ts_ms"),
            position=_position(source),
        )


def _optional_dict(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise MalformedPayloadError(
        f"Debezium field `{key}` must be an object or null, got {type(value).__name__}"
    )


def _optional_int(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise MalformedPayloadError(f"Debezium field `{key}` must be an integer or null, got {value!r}")


def _position(source: dict[str, Any]) -> dict[str, Any]:
    if source.get("lsn") is not None:
        return {"lsn": source["lsn"]}
    if source.get("file") is not None and source.get("pos") is not None:
        return {"file": source["file"], "pos": source["pos"]}
    return {}


def _unwrap(decoded: Any) -> Any:
    """Strip Kafka Connect's JsonConverter `{"schema": ..., "payload": ...}` wrapper when present."""
    if (
        isinstance(decoded, dict)
        and decoded.keys() == _WRAPPER_KEYS
        and (decoded["payload"] is None or isinstance(decoded["payload"], dict))
    ):
        return decoded["payload"]
    return decoded


class DebeziumSerde:
    """Debezium change-event values as `ChangeRecord`s.

    `inner` decodes the bytes to the envelope: JsonSerde (default; the `schema`/`payload` wrapper is
    detected per record) or an AvroSerde bound to the registry. A Kafka null, a JSON `null`, and a
    wrapper whose payload is null are all tombstones.
    """

    def __init__(self, inner: Serde | None = None) -> None:
        self._inner: Serde = inner if inner is not None else JsonSerde()

    @property
    def inner(self) -> Serde:
        """The serde that turns bytes into the envelope."""
        return self._inner

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> ChangeRecord:
        if data is None:
            return ChangeRecord(op=TOMBSTONE)
        envelope = _unwrap(self._inner.deserialize(data, ctx))
        try:
            return ChangeRecord.from_envelope(envelope)
        except MalformedPayloadError as exc:
            raise MalformedPayloadError(f"{exc} (topic {ctx.topic})") from None

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None:
        """Write a `ChangeRecord` (or an envelope dict) as a bare envelope; tombstones become null."""
        envelope = obj.to_envelope() if isinstance(obj, ChangeRecord) else obj
        if envelope is None:
            return None
        return self._inner.serialize(envelope, ctx)


class DebeziumKeySerde:
    """Debezium record keys: the primary-key struct as a dict (wrapper stripped), None for a null key."""

    def __init__(self, inner: Serde | None = None) -> None:
        self._inner: Serde = inner if inner is not None else JsonSerde()

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> dict[str, Any] | None:
        if data is None:
            return None
        key = _unwrap(self._inner.deserialize(data, ctx))
        if key is None or isinstance(key, dict):
            return key
        raise MalformedPayloadError(
            f"Debezium key in {ctx.topic} must be an object (the primary-key struct), "
            f"got {type(key).__name__}"
        )

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None:
        return self._inner.serialize(obj, ctx)
