"""The serde protocol: bytes <-> Python objects for record keys and values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class SerdeContext:
    """Where the bytes come from or go to; subject naming strategies need the topic."""

    topic: str
    is_key: bool = False


@runtime_checkable
class Serde(Protocol):
    """Turns bytes into objects and back.

    `deserialize` raises a subclass of `streamsvc.errors.DecodeError` on bad input, never anything else;
    `serialize` raises `streamsvc.errors.EncodeError`. `None` (a Kafka null, e.g. a tombstone) must be
    accepted by `deserialize`; what it becomes is up to the serde.
    """

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> Any: ...

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None: ...
