"""JSON serde on orjson."""

from __future__ import annotations

from typing import Any

import orjson

from streamsvc.errors import EncodeError, MalformedPayloadError
from streamsvc.serde.base import SerdeContext


class JsonSerde:
    """UTF-8 JSON via orjson. A Kafka null stays `None` in both directions."""

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> Any:
        if data is None:
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MalformedPayloadError(f"invalid JSON in {ctx.topic}: {exc}") from exc

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None:
        if obj is None:
            return None
        try:
            return orjson.dumps(obj)
        except TypeError as exc:
            raise EncodeError(f"cannot encode {type(obj).__name__} as JSON for {ctx.topic}: {exc}") from exc
