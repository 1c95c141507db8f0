"""Deterministic shop traffic: Debezium CDC for `shop.public.customers` and `shop.public.orders`, and
JSON click events for `shop.clicks` (the input of `topologies/shop`).

`shop_events(ShopConfig(seed=...))` returns plain `Event`s (same seed, same events); `encode` turns them
into Kafka records (Avro through the registry for the CDC topics, orjson for clicks), and
`streamsvc.generate.oracle.expected` computes what the pipeline must output from the same events.

The traffic: a snapshot (`op=r`) of the customers who click and order, then in event-time order clicks
(a share out of order, a share late), orders created, shipped and cancelled (delete + tombstone), and
customer changes: e-mail updates, guests created, updated and deleted (delete + tombstone, or a lone
tombstone). Half-way, customers switch to schema `customers_v2` (adds the optional `tier`), a compatible
evolution registered in the registry. A `malformed` share is replaced by poison records, cycling through
every kind in `POISON` so a small run still covers each one.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

CUSTOMERS, ORDERS, CLICKS = "shop.public.customers", "shop.public.orders", "shop.clicks"
TOPICS = (CUSTOMERS, ORDERS, CLICKS)
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "shop"
SCHEMAS = {"customers_v1": CUSTOMERS, "customers_v2": CUSTOMERS, "orders_v1": ORDERS}
"""Schema file stem -> the topic whose `<topic>-value` subject it is registered under."""

COUNTRIES = ("DE", "FR", "NL", "US", "GB")
EVENTS = ("view", "cart", "checkout")
CAMPAIGNS = {"none": 0, "mail": 1, "social": 2}
"""Campaign code -> id: the pipeline looks it up, so an unknown code makes the operator raise."""
PAGE_PATTERN = r"/[a-z]+/[0-9]+"
MAX_DURATION_MS = 3_600_000
GUEST_BASE = 100_000
ACTIVE_MS = 8 * 60_000

POISON: dict[str, tuple[str, str]] = {
    "truncated_json": (CLICKS, "decode"),
    "not_a_record": (CLICKS, "validate"),
    "missing_user": (CLICKS, "validate"),
    "wrong_type": (CLICKS, "validate"),
    "out_of_range": (CLICKS, "validate"),
    "unknown_event": (CLICKS, "validate"),
    "bad_page": (CLICKS, "validate"),
    "unknown_campaign": (CLICKS, "process"),
    "bad_magic": (ORDERS, "decode"),
    "unknown_schema_id": (ORDERS, "decode"),
    "unknown_op": (ORDERS, "decode"),
}
"""Poison kind -> (topic, the DLQ stage it must reach). Late clicks reach stage `late` on their own."""


@dataclass(frozen=True)
class ShopConfig:
    """Size and shape of the traffic. `records` counts the events after the customer snapshot."""

    records: int = 5_000
    customers: int = 60
    seed: int = 7
    malformed: float = 0.03
    out_of_order: float = 0.1
    late: float = 0.02
    span_ms: int = 40 * 60_000
    start_ms: int | None = None
    """Event time of the first record; default an hour ago rounded to the minute (retention-safe)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One record before encoding. `value` is a click dict, a Debezium envelope dict, or None (a
    tombstone); `schema` names the Avro schema of CDC values; `poison` marks a malformed record."""

    topic: str
    key: bytes
    value: Any
    timestamp_ms: int
    schema: str | None = None
    poison: str | None = None


def customer_key(customer_id: int) -> bytes:
    """The Kafka key of a customer's CDC records, and of that customer's clicks (joins match bytes)."""
    return orjson.dumps({"id": customer_id})


@dataclass
class _State:
    rng: random.Random
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    guests: dict[int, dict[str, Any]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_order: int = 1
    next_guest: int = GUEST_BASE
    lsn: int = 0
    poisoned: int = 0


def _envelope(st: _State, table: str, op: str, before: Any, after: Any, t: int) -> dict[str, Any]:
    st.lsn += 1
    source = {"ts_ms": t, "lsn": st.lsn, "db": "shop", "table": table}
    return {"before": before, "after": after, "source": source, "op": op, "ts_ms": t}


def _customer_row(st: _State, cid: int, v2: bool, country: str | None = None) -> dict[str, Any]:
    rng = st.rng
    row = {
        "id": cid,
        "name": f"customer-{cid}",
        "email": f"c{cid}.{rng.randrange(1000)}@example.com",
        "country": country or rng.choice(COUNTRIES),
    }
    if v2:
        row["tier"] = rng.choice(("gold", "silver", None))
    return row


def _as_schema(row: dict[str, Any] | None, v2: bool) -> dict[str, Any] | None:
    """A row in the shape of the writer schema (v2 rows carry `tier`, v1 rows do not)."""
    if row is None:
        return None
    plain = {k: v for k, v in row.items() if k != "tier"}
    return {**plain, "tier": row.get("tier")} if v2 else plain


def _customer_change(st: _State, t: int, v2: bool) -> list[Event]:
    rng, schema = st.rng, "customers_v2" if v2 else "customers_v1"

    def change(cid: int, op: str, before: Any, after: Any) -> Event:
        env = _envelope(st, "customers", op, _as_schema(before, v2), _as_schema(after, v2), t)
        return Event(CUSTOMERS, customer_key(cid), env, t, schema)

    roll = rng.random()
    if roll < 0.3:  # a clicking customer changes e-mail (name and country stay)
        cid = rng.randrange(1, len(st.customers) + 1)
        old = st.customers[cid]
        new = {**_customer_row(st, cid, v2, old["country"]), "name": old["name"]}
        st.customers[cid] = new
        return [change(cid, "u", old, new)]
    if roll < 0.55 or not st.guests:
        cid = st.next_guest
        st.next_guest += 1
        st.guests[cid] = _customer_row(st, cid, v2)
        return [change(cid, "c", None, st.guests[cid])]
    cid = rng.choice(sorted(st.guests))
    old = st.guests[cid]
    if roll < 0.75:
        st.guests[cid] = {**_customer_row(st, cid, v2, old["country"]), "name": old["name"]}
        return [change(cid, "u", old, st.guests[cid])]
    del st.guests[cid]
    if roll < 0.92:
        out = [change(cid, "d", old, None)]
        if rng.random() < 0.7:
            out.append(Event(CUSTOMERS, customer_key(cid), None, t))
        return out
    return [Event(CUSTOMERS, customer_key(cid), None, t)]  # a lone tombstone (its delete compacted away)


def order_key(order_id: int) -> bytes:
    """The Kafka key of an order's CDC records."""
    return orjson.dumps({"id": order_id})


def _order_change(st: _State, t: int) -> list[Event]:
    rng = st.rng
    open_orders = [o for o, row in st.orders.items() if row["status"] == "created"]
    if rng.random() < 0.7 or not open_orders:
        oid, cid = st.next_order, rng.randrange(1, len(st.customers) + 1)
        st.next_order += 1
        row = {
            "id": oid,
            "customer_id": cid,
            "amount_cents": rng.randrange(100, 20_000),
            "country": st.customers[cid]["country"],
            "status": "created",
            "created_at": t,
        }
        st.orders[oid] = row
        return [Event(ORDERS, order_key(oid), _envelope(st, "orders", "c", None, row, t), t, "orders_v1")]
    oid = rng.choice(open_orders)
    old = st.orders[oid]
    if rng.random() < 0.6:
        st.orders[oid] = {**old, "status": "shipped"}
        return [
            Event(
                ORDERS, order_key(oid), _envelope(st, "orders", "u", old, st.orders[oid], t), t, "orders_v1"
            )
        ]
    del st.orders[oid]
    env = _envelope(st, "orders", "d", old, None, t)
    return [Event(ORDERS, order_key(oid), env, t, "orders_v1"), Event(ORDERS, order_key(oid), None, t)]


def _click(st: _State, config: ShopConfig, t: int, start: int) -> Event:
    """A click of a customer active now: a third of the customers at a time, the third changing
    every ACTIVE_MS of event time, so that sessions close within a run."""
    rng = st.rng
    block = (t - start) // ACTIVE_MS
    active = [c for c in range(1, len(st.customers) + 1) if (c + block) % 3 == 0]
    cid = rng.choice(active) if active else rng.randrange(1, len(st.customers) + 1)
    event_time = t
    roll = rng.random()
    if roll < config.late:
        event_time = t - rng.randrange(15 * 60_000, 25 * 60_000)
    elif roll < config.late + config.out_of_order:
        event_time = t - rng.randrange(1, 30_000)
    value = {
        "user_id": cid,
        "page": f"/{rng.choice(('product', 'category', 'cart'))}/{rng.randrange(1, 60)}",
        "event": rng.choice(EVENTS),
        "campaign": rng.choice(tuple(CAMPAIGNS)),
        "duration_ms": rng.randrange(0, 60_000),
        "ts": event_time,
    }
    return Event(CLICKS, customer_key(cid), value, t)


def _poison(st: _State, t: int) -> Event:
    kind = list(POISON)[st.poisoned % len(POISON)]
    st.poisoned += 1
    topic = POISON[kind][0]
    cid = st.rng.randrange(1, len(st.customers) + 1)
    click = {
        "user_id": cid,
        "page": "/product/1",
        "event": "view",
        "campaign": "none",
        "duration_ms": 5,
        "ts": t,
    }
    value: Any = {
        "not_a_record": [cid, "/product/1"],
        "missing_user": {k: v for k, v in click.items() if k != "user_id"},
        "wrong_type": {**click, "user_id": str(cid)},
        "out_of_range": {**click, "duration_ms": -5},
        "unknown_event": {**click, "event": "teleport"},
        "bad_page": {**click, "page": "no page"},
        "unknown_campaign": {**click, "campaign": "billboard"},
    }.get(kind, click)
    if topic == ORDERS:
        oid = -1 - st.poisoned
        row = {
            "id": oid,
            "customer_id": cid,
            "amount_cents": 1,
            "country": "DE",
            "status": "created",
            "created_at": t,
        }
        env = _envelope(st, "orders", "x", None, row, t)
        return Event(ORDERS, order_key(oid), env, t, "orders_v1", kind)
    return Event(CLICKS, customer_key(cid), value, t, None, kind)


def default_start_ms() -> int:
    """An hour ago rounded down to the minute."""
    return (int(time.time() * 1000) - 3_600_000) // 60_000 * 60_000


def shop_events(config: ShopConfig) -> list[Event]:
    """Every event of the run, in production order (deterministic in `config`)."""
    return list(iter_shop_events(config))


def iter_shop_events(config: ShopConfig) -> Iterator[Event]:
    """`shop_events` one at a time."""
    st = _State(random.Random(config.seed))
    start = config.start_ms if config.start_ms is not None else default_start_ms()
    for i in range(1, config.customers + 1):  # the snapshot, before any click or order
        t = start - 10_000 + i
        st.customers[i] = _customer_row(st, i, False)
        env = _envelope(st, "customers", "r", None, st.customers[i], t)
        yield Event(CUSTOMERS, customer_key(i), env, t, "customers_v1")
    step = config.span_ms / max(1, config.records)
    for i in range(config.records):
        t = start + int(i * step)
        v2 = i >= config.records // 2
        roll = st.rng.random()
        if roll < config.malformed:
            yield _poison(st, t)
        elif roll < config.malformed + 0.08:
            yield from _order_change(st, t)
        elif roll < config.malformed + 0.12:
            yield from _customer_change(st, t, v2)
        else:
            yield _click(st, config, t, start)


def load_schema(name: str) -> str:
    """The Avro schema text of `schemas/shop/<name>.avsc`."""
    return (SCHEMA_DIR / f"{name}.avsc").read_text()


_BAD_MAGIC = b"\x01\x00\x00\x00\x01not avro"
_UNKNOWN_ID = struct.pack(">bI", 0, 0x7FFF_FFF0) + b"\x02"
