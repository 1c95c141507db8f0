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
    msg: SourceMessage, dlq_topic: str, stage: Stage, exc: BaseException | str, app: str
) -> OutputRecord:
    """Build the DLQ record for `msg`: key, value and headers untouched, `dlq.*` headers appended."""
    error_class = error_class_of(exc)
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
    return OutputRecord(dlq_topic, _as_bytes(msg.key()), _as_bytes(msg.value()), ts, headers)


def dlq_headers(headers: Any) -> dict[str, str]:
    """The `dlq.*` headers of a consumed DLQ record as text (for re-drive and inspection)."""
    pairs = headers.items() if isinstance(headers, dict) else (headers or [])
    return {k: v.decode() if isinstance(v, bytes) else (v or "") for k, v in pairs if k.startswith("dlq.")}
