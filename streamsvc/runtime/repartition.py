"""Repartition topics: where re-keyed records meet the other records of their new key.

A `RepartitionOp` (`Stream.group_by`, `Stream.repartition`, or inserted before a stateful operator
that follows `select_key`) ends one sub-topology in a sink to `<app_id>-<name>-repartition` and starts
another from that topic, as Kafka Streams does. The upstream writes in the same transaction as the
offsets it consumed; the downstream consumes the topic (read_committed) in the same consumer group and
commits its offsets in a later transaction. A record is partitioned by the bytes of its new key
(murmur2, as the Java clients), so a stream re-keyed to a table's key lands in the table's partition.

With the default key serde a key keeps its type across the topic: bytes stay bytes, str is written as
UTF-8 and int as int64 big-endian, and the header `streamsvc.key.type` (`b`, `s`, `i`) says which.
"""

from __future__ import annotations

import struct
from typing import Any

from streamsvc.errors import EncodeError, MalformedPayloadError

KEY_TYPE_HEADER = "streamsvc.key.type"
REPARTITION_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1"}
"""Kept until consumed: records carry their event time, which time-based retention would judge."""

_LONG = struct.Struct(">q")


class RekeyError(EncodeError):
    """A record whose new key cannot be partitioned (None)."""


def repartition_topic(app_id: str, name: str) -> str:
    return f"{app_id}-{name}-repartition"


def encode_typed_key(key: Any) -> tuple[bytes, bytes]:
    """(wire bytes, type tag) of a re-keyed record's key."""
    if isinstance(key, bytes):
        return key, b"b"
    if isinstance(key, str):
        return key.encode(), b"s"
    if isinstance(key, int) and not isinstance(key, bool):
        try:
            return _LONG.pack(key), b"i"
        except struct.error as exc:
            raise EncodeError(f"repartition key {key} does not fit an int64") from exc
    if key is None:
        raise RekeyError("the new key is None: a record without a key cannot be repartitioned")
    raise EncodeError(
        f"repartition keys must be bytes, str or int (or give key_serde), not {type(key).__name__}"
    )


def decode_typed_key(data: bytes | None, headers: list[tuple[str, bytes | None]] | None) -> Any:
    tag = b"b"
    for name, value in headers or ():
        if name == KEY_TYPE_HEADER:
            tag = value or b"b"
    raw = data or b""
    if tag == b"b":
        return raw
    if tag == b"s":
        return raw.decode()
    if tag == b"i" and len(raw) == _LONG.size:
        return _LONG.unpack(raw)[0]
    raise MalformedPayloadError(f"repartition key type {tag!r} does not match its {len(raw)} bytes")
