"""DLQ records: original bytes and headers kept, `dlq.*` headers appended and readable back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from streamsvc.dlq.records import STAGES, OutputRecord, dead_letter, dlq_headers, error_class_name
from streamsvc.errors import DecodeError, EncodeError, MalformedPayloadError


@dataclass
class FakeMessage:
    """Implements the `SourceMessage` protocol."""

    topic_: str | None = "orders"
    value_: str | bytes | None = b'{"id":1}'
    key_: str | bytes | None = b"k1"
    partition_: int | None = 2
    offset_: int | None = 17
    headers_: Any = None
    ts: int = 1_700_000_000_000

    def topic(self) -> str | None:
        return self.topic_

    def partition(self) -> int | None:
        return self.partition_

    def offset(self) -> int | None:
        return self.offset_

    def key(self) -> str | bytes | None:
        return self.key_

    def value(self) -> str | bytes | None:
        return self.value_

    def headers(self) -> Any:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.ts)


DLQ_ORDER = [
    "dlq.error.class",
    "dlq.error.message",
    "dlq.stage",
    "dlq.source.topic",
    "dlq.source.partition",
    "dlq.source.offset",
    "dlq.source.timestamp",
    "dlq.app",
]


def test_dead_letter_keeps_original_bytes_and_appends_dlq_headers() -> None:
    m = FakeMessage(headers_=[("trace-id", b"t-1"), ("dup", b"a"), ("dup", b"b")])
    rec = dead_letter(m, "orders.dlq", "decode", MalformedPayloadError("invalid JSON"), "my-app")
    assert isinstance(rec, OutputRecord)
    # Stamped when dead-lettered (0: the producer's clock); the original time is in a header.
    assert (rec.topic, rec.key, rec.value, rec.timestamp_ms) == ("orders.dlq", b"k1", b'{"id":1}', 0)
    assert rec.headers == [
        ("trace-id", b"t-1"),
        ("dup", b"a"),
        ("dup", b"b"),
        ("dlq.error.class", b"streamsvc.errors.MalformedPayloadError"),
        ("dlq.error.message", b"invalid JSON"),
        ("dlq.stage", b"decode"),
        ("dlq.source.topic", b"orders"),
        ("dlq.source.partition", b"2"),
        ("dlq.source.offset", b"17"),
        ("dlq.source.timestamp", b"1700000000000"),
        ("dlq.app", b"my-app"),
    ]


def test_dlq_headers_round_trip() -> None:
    m = FakeMessage(headers_=[("trace-id", b"t-1")], partition_=0, offset_=0, ts=5)
    rec = dead_letter(m, "x.dlq", "process", ValueError("bad qty"), "app")
    assert dlq_headers(rec.headers) == {
        "dlq.error.class": "ValueError",
        "dlq.error.message": "bad qty",
        "dlq.stage": "process",
        "dlq.source.topic": "orders",
        "dlq.source.partition": "0",
        "dlq.source.offset": "0",
        "dlq.source.timestamp": "5",
        "dlq.app": "app",
    }


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_is_recorded(stage: Any) -> None:
    rec = dead_letter(FakeMessage(), "d", stage, RuntimeError("x"), "a")
    assert dlq_headers(rec.headers)["dlq.stage"] == stage


def test_stages_are_the_brief_ones() -> None:
    assert STAGES == ("decode", "validate", "process", "late")


def test_string_error_is_an_expectation_failure() -> None:
    rec = dead_letter(FakeMessage(), "d", "validate", "id: must not be null", "a")
    h = dlq_headers(rec.headers)
    assert h["dlq.error.class"] == "streamsvc.errors.ExpectationFailed"
    assert h["dlq.error.message"] == "id: must not be null"


def test_exception_without_message_uses_repr() -> None:
    rec = dead_letter(FakeMessage(), "d", "process", KeyError(), "a")
    assert dlq_headers(rec.headers)["dlq.error.message"] == "KeyError()"


class LocalError(Exception):
    class Nested(Exception):
        pass


def test_error_class_name_is_qualified_except_builtins() -> None:
    assert error_class_name(ValueError("x")) == "ValueError"
    assert error_class_name(EncodeError("x")) == "streamsvc.errors.EncodeError"
    assert error_class_name(DecodeError("x")) == "streamsvc.errors.DecodeError"
    assert error_class_name(LocalError()) == f"{__name__}.LocalError"
    assert error_class_name(LocalError.Nested()) == f"{__name__}.LocalError.Nested"


def test_message_is_truncated_to_4096_chars() -> None:
    rec = dead_letter(FakeMessage(), "d", "process", ValueError("x" * 5000), "a")
    msg = dlq_headers(rec.headers)["dlq.error.message"]
    assert msg == "x" * 4096
    exact = dead_letter(FakeMessage(), "d", "process", ValueError("y" * 4096), "a")
    assert dlq_headers(exact.headers)["dlq.error.message"] == "y" * 4096


def test_truncation_counts_characters_not_bytes() -> None:
    rec = dead_letter(FakeMessage(), "d", "validate", "é" * 5000, "a")
    msg = dlq_headers(rec.headers)["dlq.error.message"]
    assert msg == "é" * 4096
    assert len(msg.encode()) == 8192


def test_non_ascii_message_is_utf8() -> None:
    rec = dead_letter(FakeMessage(), "d", "process", ValueError("prix: 5 €"), "a")
    assert ("dlq.error.message", "prix: 5 €".encode()) in (rec.headers or [])


def test_string_key_and_value_become_bytes() -> None:
    rec = dead_letter(FakeMessage(key_="clé", value_='{"a": "ü"}'), "d", "decode", ValueError("x"), "a")
    assert rec.key == "clé".encode()
    assert rec.value == '{"a": "ü"}'.encode()
    assert isinstance(rec.key, bytes) and isinstance(rec.value, bytes)


def test_null_key_and_value_stay_null() -> None:
    rec = dead_letter(FakeMessage(key_=None, value_=None), "d", "decode", ValueError("x"), "a")
    assert (rec.key, rec.value) == (None, None)


def test_no_headers_gives_only_dlq_headers() -> None:
    rec = dead_letter(FakeMessage(headers_=None), "d", "decode", ValueError("x"), "a")
    assert [k for k, _ in rec.headers or []] == DLQ_ORDER


def test_original_headers_are_not_mutated() -> None:
    original = [("a", b"1")]
    dead_letter(FakeMessage(headers_=original), "d", "decode", ValueError("x"), "a")
    assert original == [("a", b"1")]


def test_missing_partition_and_offset_are_rendered() -> None:
    rec = dead_letter(FakeMessage(topic_=None, partition_=None, offset_=None), "d", "late", "x", "a")
    h = dlq_headers(rec.headers)
    assert (h["dlq.source.topic"], h["dlq.source.partition"], h["dlq.source.offset"]) == ("", "None", "None")


def test_dlq_headers_keeps_only_dlq_prefixed_and_decodes() -> None:
    headers: list[tuple[str, bytes | None]] = [
        ("trace", b"t"),
        ("dlq.stage", b"validate"),
        ("dlq.error.message", None),
        ("xdlq.other", b"no"),
    ]
    assert dlq_headers(headers) == {"dlq.stage": "validate", "dlq.error.message": ""}


def test_dlq_headers_of_nothing() -> None:
    assert dlq_headers(None) == {}
    assert dlq_headers([]) == {}


def test_dlq_headers_last_duplicate_wins() -> None:
    assert dlq_headers([("dlq.stage", b"decode"), ("dlq.stage", b"process")]) == {"dlq.stage": "process"}
