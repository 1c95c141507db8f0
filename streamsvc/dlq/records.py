"""Dead-letter records: the original bytes and headers, plus the `dlq.*` headers of BRIEF §3.2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Stage = Literal["decode", "validate", "process", "late"]
STAGES: tuple[Stage, ...] = ("decode", "validate", "process", "late")

Headers = list[tuple[str, str | bytes | None]]


class SourceMessage(Protocol):
    """The subset of `confluent_kafka.Message` the DLQ needs (tests may pass a plain object)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass(slots=True)
class OutputRecord:
    """A record ready to produce: real topic name and serialized bytes."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Headers | None = None


def error_class_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


EXPECTATION_FAILED = "streamsvc.errors.ExpectationFailed"


def error_class_of(exc: BaseException | str) -> str:
    """The `dlq.error.class` of a failure: the exception's class, or ExpectationFailed for a violation."""
    return error_class_name(exc) if isinstance(exc, BaseException) else EXPECTATION_FAILED


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def dead_letter(
    msg: SourceMessage,
    dlq_topic: str,
    stage: Stage,
    exc: BaseException | str,
    app: str,
    max_bytes: int | None = None,
    error_class: str | None = None,
) -> OutputRecord:
    """Build the DLQ record for `msg`: key, value and headers untouched, `dlq.*` headers appended.

    A record that would exceed `max_bytes` (key + value + headers) keeps its headers and a truncated
    value, with `dlq.payload.truncated=true` and `dlq.payload.size=<original bytes>`. The DLQ record is
    stamped with the time of dead-lettering (the original time is in `dlq.source.timestamp`), so an
    out-of-range source timestamp cannot get the DLQ record refused too. `error_class` overrides the
    class name taken from `exc` (when re-writing a dead letter recorded earlier).
    """
    error_class = error_class or error_class_of(exc)
    message = (str(exc) or repr(exc)) if isinstance(exc, BaseException) else exc
    _, ts = msg.timestamp()
    original = msg.headers() or []
    headers: Headers = list(original.items() if isinstance(original, dict) else original)
    headers += [
        ("dlq.error.class", error_class.encode()),
        ("dlq.error.message", message[:4096].encode(errors="replace")),
        ("dlq.stage", stage.encode()),
        ("dlq.source.topic", (msg.topic() or "").encode()),
        ("dlq.source.partition", str(msg.partition()).encode()),
        ("dlq.source.offset", str(msg.offset()).encode()),
        ("dlq.source.timestamp", str(ts).encode()),
        ("dlq.app", app.encode()),
    ]
    key, value = _as_bytes(msg.key()), _as_bytes(msg.value())
    if max_bytes is not None:
        key, value = _fit(key, value, headers, max_bytes)
    return OutputRecord(dlq_topic, key, value, 0, headers)


def _size(headers: Headers) -> int:
    return sum(len(k) + len(v or b"") for k, v in headers)


def _fit(
    key: bytes | None, value: bytes | None, headers: Headers, max_bytes: int
) -> tuple[bytes | None, bytes | None]:
    """Truncate `value` (and an outsized `key`) so that the record fits in `max_bytes`."""
    if len(key or b"") + len(value or b"") + _size(headers) <= max_bytes:
        return key, value
    headers += [("dlq.payload.truncated", b"true"), ("dlq.payload.size", str(len(value or b"")).encode())]
    if key is not None and len(key) > max_bytes // 4:
        headers += [("dlq.key.truncated", b"true"), ("dlq.key.size", str(len(key)).encode())]
        key = key[: max_bytes // 4]
    room = max_bytes - _size(headers) - len(key or b"")
    return key, (value or b"")[: max(0, room)]


def dlq_headers(headers: Any) -> dict[str, str]:
    """The `dlq.*` headers of a consumed DLQ record as text (for re-drive and inspection)."""
    pairs = headers.items() if isinstance(headers, dict) else (headers or [])
    return {k: v.decode() if isinstance(v, bytes) else (v or "") for k, v in pairs if k.startswith("dlq.")}
