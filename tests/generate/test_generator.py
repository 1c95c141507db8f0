"""The shop generator: same seed -> same bytes; the malformed share covers every poison kind."""

from __future__ import annotations

from collections import Counter

from streamsvc.errors import DecodeError
from streamsvc.generate.nexmark import bids
from streamsvc.generate.produce import Encoder
from streamsvc.generate.shop import CLICKS, CUSTOMERS, ORDERS, POISON, ShopConfig, shop_events
from streamsvc.registry.client import registry_client
from streamsvc.serde import AvroSerde, DebeziumSerde, SerdeContext

CONFIG = ShopConfig(records=3_000, seed=5, start_ms=1_700_000_000_000)


def encoded(config: ShopConfig) -> list[tuple[str, bytes | None, bytes | None, int]]:
    encoder = Encoder(registry_client("mock://generator"))  # a fresh, empty registry each time
    return [encoder.encode(e) for e in shop_events(config)]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = encoded(CONFIG)
    assert first == encoded(CONFIG)
    assert first != encoded(ShopConfig(records=3_000, seed=6, start_ms=CONFIG.start_ms))
    assert [b.to_json_dict() for b in bids(500, seed=3, start_ms=0)] == [
        b.to_json_dict() for b in bids(500, seed=3, start_ms=0)
    ]


def test_cdc_covers_every_operation_and_a_schema_change() -> None:
    events = shop_events(CONFIG)
    ops = Counter(
        (e.topic, "tombstone" if e.value is None else e.value["op"])
        for e in events
        if e.topic != CLICKS and e.poison is None
    )
    for topic in (CUSTOMERS, ORDERS):
        for op in ("c", "u", "d", "tombstone"):
            assert ops[topic, op] > 0, (topic, op)
    assert ops[CUSTOMERS, "r"] == CONFIG.customers
    schemas = [e.schema for e in events if e.topic == CUSTOMERS and e.schema]
    switch = schemas.index("customers_v2")
    assert set(schemas[:switch]) == {"customers_v1"} and set(schemas[switch:]) == {"customers_v2"}


def test_malformed_share_covers_every_poison_kind_and_each_fails_where_it_should() -> None:
    events = shop_events(ShopConfig(records=4_000, seed=9, malformed=0.05, start_ms=0))
    poison = [e for e in events if e.poison]
    assert set(Counter(e.poison for e in poison)) == set(POISON)
    assert 0.035 < len(poison) / 4_000 < 0.065
    assert all(e.topic == POISON[e.poison][0] for e in poison if e.poison)
    none = shop_events(ShopConfig(records=4_000, seed=9, malformed=0.0, start_ms=0))
    assert not any(e.poison for e in none)
    # Poison orders really are undecodable; the clean ones decode.
    registry = registry_client("mock://generator-decode")
    encoder = Encoder(registry)
    serde = DebeziumSerde(AvroSerde(None, registry=registry))
    ctx = SerdeContext(ORDERS)
    for event in [e for e in events if e.topic == ORDERS][:400]:
        value = encoder.encode(event)[2]
        try:
            serde.deserialize(value, ctx)
            failed = False
        except DecodeError:
            failed = True
        assert failed == (event.poison is not None), event
