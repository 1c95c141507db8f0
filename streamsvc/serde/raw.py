"""Pass-through serdes for bytes and UTF-8 strings."""

from __future__ import annotations

from typing import Any

from streamsvc.errors import EncodeError, MalformedPayloadError
from streamsvc.serde.base import SerdeContext


class BytesSerde:
    """Keeps bytes as they are (the default key serde: keys are forwarded untouched)."""

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> Any:
        return data

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None:
        if obj is None or isinstance(obj, bytes):
            return obj
        if isinstance(obj, str):
            return obj.encode()
        raise EncodeError(f"BytesSerde for {ctx.topic} needs bytes or str, got {type(obj).__name__}")


class StringSerde:
    """UTF-8 strings."""

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> Any:
        if data is None:
            return None
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise MalformedPayloadError(f"invalid UTF-8 in {ctx.topic}: {exc}") from exc

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None:
        if obj is None:
            return None
        return str(obj).encode()
