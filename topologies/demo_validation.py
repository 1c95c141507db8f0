"""Demo: validate and normalise raw payment events.

events (JSON) --expectations--> normalise --> drop heartbeats --> large payments -> events_flagged
                                                              \\-> the rest      -> events_clean
Every bad record (invalid JSON, failed expectation, operator error) lands in `<events topic>.dlq`.
"""

from __future__ import annotations

import random
from typing import Any

from streamsvc.serde import JsonSerde
from streamsvc.topology import Topology
from streamsvc.validation import accepted_values, in_range, is_record, is_type, matches, not_null

CURRENCY_TO_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}
LARGE_CENTS = 50_000


def normalise(event: dict[str, Any]) -> dict[str, Any]:
    """Lower-case the e-mail and convert the amount to euro cents (unknown currency raises)."""
    rate = CURRENCY_TO_EUR[event["currency"]]  # KeyError -> DLQ stage "process"
    return {
        "user_id": event["user_id"],
        "type": event["type"],
        "email": event["email"].strip().lower(),
        "amount_eur_cents": round(event["amount"] * rate * 100),
        "ts": event["ts"],
    }


topology = Topology("demo-validation")
events = topology.source(
    "events",
    value_serde=JsonSerde(),
    expectations=[
        is_record(),
        not_null("user_id"),
        is_type("user_id", int),
        accepted_values("type", ["payment", "refund", "heartbeat"]),
        in_range("amount", min=0, max=1_000_000),
        matches("email", r"\s*[^@\s]+@[^@\s]+\.[A-Za-z]+\s*"),
    ],
)
payments = events.map(normalise).filter(lambda e: e["type"] != "heartbeat")
routes = payments.branch(large=lambda e: e["amount_eur_cents"] >= LARGE_CENTS, default="regular")
routes["large"].to("events_flagged", value_serde=JsonSerde())
routes["regular"].to("events_clean", value_serde=JsonSerde())


def sample_events(n: int, malformed_share: float = 0.05, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """Deterministic (key, value) pairs; about `malformed_share` of them are bad in assorted ways."""
    import orjson

    rng = random.Random(seed)
    out: list[tuple[bytes, bytes]] = []
    for i in range(n):
        user = rng.randrange(1, 500)
        event: dict[str, Any] = {
            "user_id": user,
            "type": rng.choices(["payment", "refund", "heartbeat"], [8, 1, 1])[0],
            "email": f" User{user}@Example.com ",
            "amount": round(rng.expovariate(1 / 120), 2),
            "currency": rng.choice(["EUR", "USD", "GBP"]),
            "ts": 1_700_000_000_000 + i * 10,
        }
        value = orjson.dumps(event)
        if rng.random() < malformed_share:
            kind = rng.randrange(6)
            if kind == 0:
                value = value[: len(value) // 2]  # truncated JSON -> decode
            elif kind == 1:
                value = orjson.dumps({k: v for k, v in event.items() if k != "user_id"})  # missing field
            elif kind == 2:
                value = orjson.dumps({**event, "amount": -5})  # range
            elif kind == 3:
                value = orjson.dumps({**event, "type": "chargeback"})  # accepted values
            elif kind == 4:
                value = orjson.dumps({**event, "email": "not-an-email"})  # regex
            else:
                value = orjson.dumps({**event, "currency": "XXX"})  # operator raises
        out.append((str(user).encode(), value))
    return out
