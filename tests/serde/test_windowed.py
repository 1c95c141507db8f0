"""Windowed key layouts: Kafka Streams' TimeWindowedSerde / SessionWindowedSerde bytes, and JSON."""

from __future__ import annotations

import pytest

from streamsvc.errors import EncodeError, MalformedPayloadError
from streamsvc.serde import StringSerde
from streamsvc.serde.base import SerdeContext
from streamsvc.serde.windowed import SessionWindowedSerde, TimeWindowedSerde, Windowed, WindowedJsonSerde

CTX = SerdeContext("t", is_key=True)


def test_time_windowed_layout_is_inner_key_then_start_big_endian() -> None:
    serde = TimeWindowedSerde(10_000, StringSerde())
    data = serde.serialize(Windowed("auction-7", 1_700_000_000_000, 1_700_000_010_000), CTX)
    assert data == b"auction-7" + (1_700_000_000_000).to_bytes(8, "big")
    assert serde.deserialize(data, CTX) == Windowed("auction-7", 1_700_000_000_000, 1_700_000_010_000)


def test_session_windowed_layout_is_inner_key_then_inclusive_end_then_start() -> None:
    serde = SessionWindowedSerde(gap_ms=300, inner=StringSerde())
    # half-open [1000, 1800): the last record at 1500; Kafka's SessionWindow end is that record's time
    data = serde.serialize(Windowed("k", 1_000, 1_800), CTX)
    assert data == b"k" + (1_500).to_bytes(8, "big") + (1_000).to_bytes(8, "big")
    assert serde.deserialize(data, CTX) == Windowed("k", 1_000, 1_800)


def test_default_inner_key_encoding_and_bytes_back() -> None:
    serde = TimeWindowedSerde(5)
    assert serde.serialize(Windowed(7, 0, 5), CTX) == (7).to_bytes(8, "big") + bytes(8)
    assert serde.serialize(Windowed(None, 0, 5), CTX) == bytes(8)
    assert serde.deserialize(b"ab" + bytes(8), CTX) == Windowed(b"ab", 0, 5)
    with pytest.raises(EncodeError):
        serde.serialize(Windowed(1.5, 0, 5), CTX)
    with pytest.raises(EncodeError):
        serde.serialize(b"not windowed", CTX)
    with pytest.raises(MalformedPayloadError):
        serde.deserialize(b"short", CTX)
    assert serde.serialize(None, CTX) is None


def test_json_layout() -> None:
    serde = WindowedJsonSerde()
    data = serde.serialize(Windowed(b"k1", 0, 1000), CTX)
    assert data == b'{"key":"k1","start":0,"end":1000}'
    assert serde.deserialize(data, CTX) == Windowed("k1", 0, 1000)
    with pytest.raises(EncodeError):
        serde.serialize(Windowed(b"\xff", 0, 1), CTX)
