"""JsonSerde: orjson round trip, nulls, and error classes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsvc.errors import EncodeError, MalformedPayloadError
from streamsvc.serde import JsonSerde, SerdeContext

CTX = SerdeContext("events")

# orjson's domain: 64-bit integers, finite floats, strings without lone surrogates (valid UTF-8).
_text = st.text(alphabet=st.characters(codec="utf-8"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children) | st.dictionaries(_text, children),
    max_leaves=25,
)


@settings(database=None, max_examples=300)
@given(json_values)
def test_round_trip(value: Any) -> None:
    serde = JsonSerde()  # a top-level None is a Kafka null both ways, which also round-trips
    assert serde.deserialize(serde.serialize(value, CTX), CTX) == value


def test_null_stays_null() -> None:
    assert JsonSerde().serialize(None, CTX) is None
    assert JsonSerde().deserialize(None, CTX) is None


def test_json_null_literal_decodes_to_none() -> None:
    assert JsonSerde().deserialize(b"null", CTX) is None


@pytest.mark.parametrize("data", [b"", b"{", b'{"a": 1,}', b"nope", b'"\xff"', b"[1, 2] 3"])
def test_invalid_json_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedPayloadError, match="events"):
        JsonSerde().deserialize(data, CTX)


@pytest.mark.parametrize("value", [object(), {"n": 2**70}, {1.5: "float key"}, "\ud800"])
def test_unencodable_is_encode_error(value: Any) -> None:
    with pytest.raises(EncodeError, match="events"):
        JsonSerde().serialize(value, CTX)
