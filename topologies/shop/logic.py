"""The shop pipeline's value functions and windows: pure Python, shared by the topology
(`pipeline.py`) and the offline oracle (`oracle.py`), which re-derives everything else."""

from __future__ import annotations

from typing import Any

from streamsvc.generate.shop import CAMPAIGNS, EVENTS, MAX_DURATION_MS, PAGE_PATTERN, customer_key
from streamsvc.serde.debezium import ChangeRecord
from streamsvc.validation import accepted_values, in_range, is_record, is_type, matches, not_null
from streamsvc.windows import Aggregate, Hopping, Session, Tumbling

SESSION = Session(gap_ms=5 * 60_000, grace_ms=60_000)
REVENUE_1M = Tumbling(size_ms=60_000, grace_ms=10_000)
REVENUE_5M = Hopping(size_ms=5 * 60_000, advance_ms=60_000, grace_ms=10_000)
ATTRIBUTION_MS = 30 * 60_000
"""An order is joined with the clicks of its customer in the 30 minutes before it."""
JOIN_GRACE_MS = 3 * 3_600_000
"""Generous, so that no click or order is late for the interval join (its result is order-free)."""

CLICK_EXPECTATIONS = (
    is_record(),
    not_null("user_id"),
    is_type("user_id", int),
    in_range("duration_ms", min=0, max=MAX_DURATION_MS),
    accepted_values("event", list(EVENTS)),
    matches("page", PAGE_PATTERN),
)


def click_time(click: Any, kafka_ts: int) -> int:
    """Event time of a click: its `ts` (int ms), else the Kafka timestamp (the record is bad anyway)."""
    ts = click.get("ts") if isinstance(click, dict) else None
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else kafka_ts


def normalise_click(click: dict[str, Any]) -> dict[str, Any]:
    """Keep the click's fields, the campaign as its id (an unknown campaign raises: DLQ `process`)."""
    return {
        "user_id": click["user_id"],
        "page": click["page"],
        "event": click["event"],
        "campaign_id": CAMPAIGNS[click["campaign"]],
        "duration_ms": click["duration_ms"],
        "ts": click["ts"],
    }


def enrich(click: dict[str, Any], customer: dict[str, Any] | None) -> dict[str, Any]:
    """A click with its customer's name and country (None when the customer is unknown)."""
    return {
        **click,
        "name": customer["name"] if customer else None,
        "country": customer["country"] if customer else None,
    }


def order_time(change: ChangeRecord, kafka_ts: int) -> int:
    """Event time of an order change: `created_at` of a created order, else the Kafka timestamp."""
    after = change.after if isinstance(change, ChangeRecord) else None
    return int(after["created_at"]) if change.op == "c" and after else kafka_ts


def is_created(change: ChangeRecord) -> bool:
    return change.op == "c"


def order_fact(change: ChangeRecord) -> dict[str, Any]:
    row = change.after or {}
    return {
        "order_id": row["id"],
        "customer_id": row["customer_id"],
        "country": row["country"],
        "amount_cents": row["amount_cents"],
        "ts": row["created_at"],
    }


def by_customer(_key: Any, order: dict[str, Any]) -> bytes:
    return customer_key(order["customer_id"])


def attribute(order: dict[str, Any], click: dict[str, Any]) -> dict[str, Any]:
    """An order with one click of its customer that preceded it within ATTRIBUTION_MS."""
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_cents": order["amount_cents"],
        "order_ts": order["ts"],
        "click_ts": click["ts"],
        "page": click["page"],
        "campaign_id": click["campaign_id"],
    }


def _session_add(acc: dict[str, Any], click: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_id": click["user_id"],
        "clicks": acc["clicks"] + 1,
        "checkouts": acc["checkouts"] + (click["event"] == "checkout"),
    }


def _session_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    user = a["user_id"] if a["user_id"] is not None else b["user_id"]
    return {
        "user_id": user,
        "clicks": a["clicks"] + b["clicks"],
        "checkouts": a["checkouts"] + b["checkouts"],
    }


SESSION_AGG = Aggregate(lambda: {"user_id": None, "clicks": 0, "checkouts": 0}, _session_add, _session_merge)


def _revenue_add(acc: dict[str, Any], order: dict[str, Any]) -> dict[str, Any]:
    return {
        "country": order["country"],
        "revenue_cents": acc["revenue_cents"] + order["amount_cents"],
        "orders": acc["orders"] + 1,
    }


def _revenue_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    country = a["country"] if a["country"] is not None else b["country"]
    return {
        "country": country,
        "revenue_cents": a["revenue_cents"] + b["revenue_cents"],
        "orders": a["orders"] + b["orders"],
    }


REVENUE_AGG = Aggregate(
    lambda: {"country": None, "revenue_cents": 0, "orders": 0}, _revenue_add, _revenue_merge
)


def flatten(result: dict[str, Any]) -> dict[str, Any]:
    """A window result `{"start", "end", "value": {...}}` as one flat row."""
    return {"window_start": result["start"], "window_end": result["end"], **result["value"]}
