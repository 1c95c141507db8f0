"""Keys of window results: (record key, window start, window end), in three documented layouts.

- `TimeWindowedSerde` -- Kafka Streams' `WindowedSerdes.TimeWindowedSerde` layout (tumbling, hopping
  and sliding windows): ``inner key bytes + start (int64 big-endian)``. The end is not on the wire; a
  reader adds the window size (Java: `TimeWindowedDeserializer(inner, windowSize)`).
- `SessionWindowedSerde` -- Kafka Streams' `WindowedSerdes.SessionWindowedSerde` layout:
  ``inner key bytes + end (int64 BE) + start (int64 BE)``. Kafka's session end is *inclusive* (the time
  of the session's last record), so the half-open end streamsvc uses internally, ``last + gap``, is
  written as ``end - gap_ms``, and read back the same way.
- `WindowedJsonSerde` -- ``{"key": ..., "start": ms, "end": ms}`` (orjson, end exclusive); bytes keys
  are written as UTF-8 text.

The inner key follows `natural_key_bytes`: bytes as they are, str as UTF-8, int as int64 big-endian
(Kafka's `LongSerializer`), None as empty. One (key, window) always gives the same bytes, so an output
topic of windows can be compacted, and an update-mode retraction is a tombstone on exactly the key of
the window it retracts.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import orjson

from streamsvc.errors import EncodeError, MalformedPayloadError
from streamsvc.serde.base import Serde, SerdeContext

_LONG = struct.Struct(">q")
_TWO_LONGS = struct.Struct(">qq")


class Windowed(NamedTuple):
    """The key of a window result: the record key and the window ``[start_ms, end_ms)``."""

    key: Any
    start_ms: int
    end_ms: int


def natural_key_bytes(key: Any, topic: str = "") -> bytes:
    """The wire bytes of a record key: bytes as is, str UTF-8, int int64 BE, None empty."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, int) and not isinstance(key, bool):
        try:
            return _LONG.pack(key)
        except struct.error as exc:
            raise EncodeError(f"key {key} does not fit an int64 for {topic}") from exc
    if key is None:
        return b""
    raise EncodeError(f"window keys for {topic} must be bytes, str, int or None, not {type(key).__name__}")


def _inner_key(inner: Serde | None, data: bytes, ctx: SerdeContext) -> Any:
    return data if inner is None else inner.deserialize(data, ctx)


def _windowed(obj: Any, ctx: SerdeContext) -> Windowed:
    if not isinstance(obj, Windowed):
        raise EncodeError(
            f"a windowed key serde for {ctx.topic} needs a Windowed key, got {type(obj).__name__}"
        )
    return obj


class TimeWindowedSerde:
    """Kafka Streams' time-windowed key layout: inner key + start. `window_size_ms` gives the end
    on reading (start + size); `inner` decodes the inner key (default: bytes) and, when given,
    also encodes it (default: `natural_key_bytes`)."""

    def __init__(self, window_size_ms: int, inner: Serde | None = None) -> None:
        self.window_size_ms = window_size_ms
        self.inner = inner

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None:
        if obj is None:
            return None
        w = _windowed(obj, ctx)
        key = natural_key_bytes(w.key, ctx.topic) if self.inner is None else self.inner.serialize(w.key, ctx)
        return (key or b"") + _LONG.pack(w.start_ms)

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> Any:
        if data is None:
            return None
        if len(data) < _LONG.size:
            raise MalformedPayloadError(f"time-windowed key of {len(data)} bytes in {ctx.topic}")
        start = _LONG.unpack_from(data, len(data) - _LONG.size)[0]
        return Windowed(_inner_key(self.inner, data[: -_LONG.size], ctx), start, start + self.window_size_ms)


class SessionWindowedSerde:
    """Kafka Streams' session-windowed key layout: inner key + inclusive end + start."""

    def __init__(self, gap_ms: int, inner: Serde | None = None) -> None:
        self.gap_ms = gap_ms
        self.inner = inner

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None:
        if obj is None:
            return None
        w = _windowed(obj, ctx)
        key = natural_key_bytes(w.key, ctx.topic) if self.inner is None else self.inner.serialize(w.key, ctx)
        return (key or b"") + _TWO_LONGS.pack(w.end_ms - self.gap_ms, w.start_ms)

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> Any:
        if data is None:
            return None
        if len(data) < _TWO_LONGS.size:
            raise MalformedPayloadError(f"session-windowed key of {len(data)} bytes in {ctx.topic}")
        end, start = _TWO_LONGS.unpack_from(data, len(data) - _TWO_LONGS.size)
        return Windowed(_inner_key(self.inner, data[: -_TWO_LONGS.size], ctx), start, end + self.gap_ms)


class WindowedJsonSerde:
    """``{"key", "start", "end"}`` as JSON (end exclusive); bytes keys become UTF-8 text."""

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None:
        if obj is None:
            return None
        w = _windowed(obj, ctx)
        key = w.key
        if isinstance(key, bytes):
            try:
                key = key.decode()
            except UnicodeDecodeError as exc:
                raise EncodeError(f"a bytes window key for {ctx.topic} is not UTF-8: {exc}") from exc
        try:
            return orjson.dumps({"key": key, "start": w.start_ms, "end": w.end_ms})
        except TypeError as exc:
            raise EncodeError(f"cannot encode window key for {ctx.topic}: {exc}") from exc

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> Any:
        if data is None:
            return None
        try:
            doc = orjson.loads(data)
            return Windowed(doc["key"], int(doc["start"]), int(doc["end"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MalformedPayloadError(f"invalid windowed JSON key in {ctx.topic}: {exc}") from exc
