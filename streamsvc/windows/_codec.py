"""Changelog entry keys: ``kind (1 byte) + int64 big-endian time + encoded record key``; meta is ``b"m"``."""

from __future__ import annotations

import struct
from collections.abc import Hashable

import numpy as np
import orjson

META = b"m"
WINDOW = b"w"  # fixed or sliding window: time = start
PARTIAL = b"p"  # sliding: all records of one key at one time; time = event time
SESSION = b"s"  # session: time = start

_TIME = struct.Struct(">q")


def encode_key(key: Hashable) -> bytes:
    """Record keys may be bytes, str, int or None (a Kafka null key)."""
    if isinstance(key, bytes):
        return b"b" + key
    if isinstance(key, str):
        return b"s" + key.encode()
    if isinstance(key, int | np.integer) and not isinstance(key, bool | np.bool_):
        return b"i" + str(int(key)).encode()
    if key is None:
        return b"n"
    raise TypeError(f"window keys must be bytes, str, int or None, not {type(key).__name__}")


def decode_key(data: bytes) -> Hashable:
    tag, body = data[:1], data[1:]
    if tag == b"b":
        return body
    if tag == b"s":
        return body.decode()
    if tag == b"i":
        return int(body)
    if tag == b"n":
        return None
    raise ValueError(f"bad key encoding {data!r}")


def entry_key(kind: bytes, time: int, key_bytes: bytes) -> bytes:
    return kind + _TIME.pack(time) + key_bytes


def parse_entry_key(data: bytes) -> tuple[bytes, int, Hashable]:
    """(kind, time, record key) of a non-meta entry."""
    return data[:1], _TIME.unpack_from(data, 1)[0], decode_key(data[9:])


def dump_meta(max_event_time: int | None, watermark: int | None) -> bytes:
    return orjson.dumps({"max_event_time": max_event_time, "watermark": watermark})


def load_meta(data: bytes) -> tuple[int | None, int | None]:
    meta = orjson.loads(data)
    return meta["max_event_time"], meta["watermark"]
