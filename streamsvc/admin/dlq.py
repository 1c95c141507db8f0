"""Reading dead-letter topics: the `dlq.*` headers of BRIEF §3.2 (`streamsvc.dlq.records`), filters, and
`inspect` - counts by stage, error class and message pattern, source partition and time range, with
samples showing every header and a readable preview of the original bytes."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from streamsvc.admin.connection import Connection
from streamsvc.dlq.records import dlq_headers
from streamsvc.errors import ConfigError
from streamsvc.runtime.topics import iter_records, partition_counts

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_HEX = re.compile(r"\b[0-9a-f]{8,}\b")


@dataclass(frozen=True)
class DeadLetter:
    """One record of a DLQ topic, with its `dlq.*` headers parsed."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    dlq: dict[str, str]

    @classmethod
    def of(cls, msg: Message) -> DeadLetter:
        found = msg.headers() or []
        raw: list[tuple[str, str | bytes | None]] = list(found.items() if isinstance(found, dict) else found)
        headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in raw]
        return cls(
            msg.partition() or 0, msg.offset() or 0, msg.timestamp()[1], msg.key(), msg.value(), headers,
            dlq_headers(raw),
        )  # fmt: skip

    @property
    def stage(self) -> str:
        return self.dlq.get("dlq.stage", "?")

    @property
    def error_class(self) -> str:
        return self.dlq.get("dlq.error.class", "?")

    @property
    def message(self) -> str:
        return self.dlq.get("dlq.error.message", "")

    @property
    def source_topic(self) -> str | None:
        return self.dlq.get("dlq.source.topic") or None

    @property
    def source_partition(self) -> int | None:
        raw = self.dlq.get("dlq.source.partition", "")
        return int(raw) if raw.lstrip("-").isdigit() else None

    @property
    def source_timestamp_ms(self) -> int | None:
        raw = self.dlq.get("dlq.source.timestamp", "")
        return int(raw) if raw.lstrip("-").isdigit() else None

    @property
    def original_headers(self) -> list[tuple[str, bytes | None]]:
        """The headers the record had before it was dead-lettered (every `dlq.*` one removed)."""
        return [(k, v) for k, v in self.headers if not k.startswith("dlq.")]

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": _iso(self.timestamp_ms),
            "headers": {k: preview(v, 300) for k, v in self.headers},
            "key": preview(self.key),
            "value": preview(self.value),
        }


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on (every condition must hold; empty = no condition)."""

    partitions: frozenset[int] = frozenset()
    from_offset: int | None = None
    to_offset: int | None = None  # inclusive
    stages: frozenset[str] = frozenset()
    error_classes: frozenset[str] = frozenset()  # full name, or its last dotted part
    message: re.Pattern[str] | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def build(
        cls,
        partitions: Sequence[int] = (),
        from_offset: int | None = None,
        to_offset: int | None = None,
        stages: Sequence[str] = (),
        error_classes: Sequence[str] = (),
        match: str | None = None,
        headers: Sequence[str] = (),
    ) -> Selection:
        pairs = []
        for text in headers:
            name, sep, value = text.partition("=")
            if not sep or not name:
                raise ConfigError(f"--header {text!r}: expected NAME=VALUE")
            pairs.append((name, value))
        try:
            pattern = re.compile(match) if match else None
        except re.error as exc:
            raise ConfigError(f"--match {match!r} is not a valid regular expression: {exc}") from exc
        return cls(
            frozenset(partitions), from_offset, to_offset, frozenset(stages), frozenset(error_classes),
            pattern, tuple(pairs),
        )  # fmt: skip

    def start_offsets(self, partitions: int) -> dict[int, int]:
        chosen = self.partitions or frozenset(range(partitions))
        return {p: max(self.from_offset or 0, 0) for p in chosen if p < partitions}

    def accepts(self, rec: DeadLetter) -> bool:
        if self.from_offset is not None and rec.offset < self.from_offset:
            return False
        if self.to_offset is not None and rec.offset > self.to_offset:
            return False
        if self.stages and rec.stage not in self.stages:
            return False
        if self.error_classes and not any(
            rec.error_class == c or rec.error_class.rsplit(".", 1)[-1] == c for c in self.error_classes
        ):
            return False
        if self.message is not None and not self.message.search(rec.message):
            return False
        values = {k: (v or b"").decode(errors="replace") for k, v in rec.headers}
        return all(values.get(k) == v for k, v in self.headers)


def read_dead_letters(
    conn: Connection, topic: str, selection: Selection, on_record: Callable[[], None] | None = None
) -> Iterator[DeadLetter]:
    """The committed dead letters of `topic` present now that `selection` accepts, each partition in
    offset order."""
    parts = partition_counts(conn.admin(), [topic]).get(topic)
    if parts is None:
        raise ConfigError(f"topic {topic} does not exist")
    start = selection.start_offsets(parts)
    for msg in iter_records(conn.bootstrap, topic, True, 120.0, conn.properties, start):
        if on_record is not None:
            on_record()
        if selection.to_offset is not None and (msg.offset() or 0) > selection.to_offset:
            continue
        rec = DeadLetter.of(msg)
        if selection.accepts(rec):
            yield rec


def message_pattern(message: str, width: int = 120) -> str:
    """The message with its variable parts (numbers, quoted text, ids) replaced, for grouping."""
    text = _QUOTED.sub("<s>", message)
    text = _HEX.sub("<id>", text)
    text = _NUMBER.sub("<n>", text)
    return text if len(text) <= width else text[: width - 3] + "..."


def preview(data: bytes | None, limit: int = 200) -> str:
    """Readable bytes: text as text, the Confluent Avro framing named, anything else as hex."""
    if data is None:
        return "null"
    if len(data) >= 5 and data[0] == 0:
        schema_id = int.from_bytes(data[1:5], "big")
        return (
            f"<confluent wire format, schema id {schema_id}, {len(data)} bytes> {_hex(data[5:], limit // 3)}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(data)} bytes> {_hex(data, limit // 3)}"
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return f"<{len(data)} bytes> {_hex(data, limit // 3)}"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(data)} bytes)"


def _hex(data: bytes, limit: int) -> str:
    shown = data[:limit].hex(" ")
    return shown + (" ..." if len(data) > limit else "")


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass
class Inspection:
    """What `inspect` found in a DLQ topic."""

    topic: str
    total: int = 0
    by_stage: Counter[str] = field(default_factory=Counter)
    by_error_class: Counter[str] = field(default_factory=Counter)
    by_pattern: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_source: Counter[tuple[str, int]] = field(default_factory=Counter)
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # DLQ partition -> first, last
    source_time: tuple[int, int] | None = None  # min, max dlq.source.timestamp
    dead_lettered_time: tuple[int, int] | None = None  # min, max DLQ record timestamp
    samples: list[DeadLetter] = field(default_factory=list)

    def add(self, rec: DeadLetter, max_samples: int) -> None:
        self.total += 1
        self.by_stage[rec.stage] += 1
        self.by_error_class[rec.error_class] += 1
        self.by_pattern[(rec.error_class, message_pattern(rec.message))] += 1
        source_partition = rec.source_partition if rec.source_partition is not None else -1
        self.by_source[(rec.source_topic or "?", source_partition)] += 1
        first, last = self.offsets.get(rec.partition, (rec.offset, rec.offset))
        self.offsets[rec.partition] = (min(first, rec.offset), max(last, rec.offset))
        self.source_time = _widen(self.source_time, rec.source_timestamp_ms)
        self.dead_lettered_time = _widen(self.dead_lettered_time, rec.timestamp_ms)
        if len(self.samples) < max_samples:
            self.samples.append(rec)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "total": self.total,
            "by_stage": dict(self.by_stage.most_common()),
            "by_error_class": dict(self.by_error_class.most_common()),
            "by_message_pattern": [
                {"error_class": c, "pattern": p, "count": n} for (c, p), n in self.by_pattern.most_common()
            ],
            "by_source_partition": [
                {"topic": t, "partition": p, "count": n} for (t, p), n in sorted(self.by_source.items())
            ],
            "dlq_offsets": {str(p): {"first": a, "last": b} for p, (a, b) in sorted(self.offsets.items())},
            "source_time": _span(self.source_time),
            "dead_lettered_time": _span(self.dead_lettered_time),
            "samples": [s.as_dict() for s in self.samples],
        }

    def render(self) -> str:
        d = self.as_dict()
        out = [f"DLQ {self.topic}: {self.total} record(s)"]
        if not self.total:
            return out[0]
        out.append(_section("STAGE", self.by_stage.most_common()))
        out.append(_section("ERROR-CLASS", self.by_error_class.most_common()))
        out.append(
            _section(
                "ERROR-CLASS / MESSAGE-PATTERN",
                [(f"{c}: {p}", n) for (c, p), n in self.by_pattern.most_common()],
            )
        )
        out.append(
            _section(
                "SOURCE-TOPIC:PARTITION", [(f"{t}:{p}", n) for (t, p), n in sorted(self.by_source.items())]
            )
        )
        out.append(
            _section(
                "DLQ-PARTITION",
                [(f"{p}", f"{a}..{b}") for p, (a, b) in sorted(self.offsets.items())],
                "OFFSETS",
            )
        )
        for label, key in (("source time", "source_time"), ("dead-lettered", "dead_lettered_time")):
            if d[key]:
                out.append(f"{label}: {d[key]['first']} .. {d[key]['last']}")
        for s in self.samples:
            out.append(f"\n--- sample: partition {s.partition} offset {s.offset} at {_iso(s.timestamp_ms)}")
            out += [f"  header {k} = {preview(v, 300)}" for k, v in s.headers]
            out.append(f"  key   = {preview(s.key)}")
            out.append(f"  value = {preview(s.value)}")
        return "\n".join(out)


def _span(span: tuple[int, int] | None) -> dict[str, str | None] | None:
    return None if span is None else {"first": _iso(span[0]), "last": _iso(span[1])}


def _widen(span: tuple[int, int] | None, value: int | None) -> tuple[int, int] | None:
    if value is None or value < 0:
        return span
    return (value, value) if span is None else (min(span[0], value), max(span[1], value))


def _section(title: str, rows: Sequence[tuple[str, Any]], value: str = "COUNT") -> str:
    width = max([len(title), *(len(r[0]) for r in rows)])
    lines = [f"\n{title:<{width}}  {value}"] + [f"{name:<{width}}  {n}" for name, n in rows]
    return "\n".join(lines)


def inspect(
    conn: Connection,
    topic: str,
    selection: Selection,
    max_samples: int = 5,
    on_record: Callable[[], None] | None = None,
) -> Inspection:
    """Read the DLQ topic once and summarise the dead letters `selection` accepts."""
    found = Inspection(topic)
    for rec in read_dead_letters(conn, topic, selection, on_record):
        found.add(rec, max_samples)
    return found
