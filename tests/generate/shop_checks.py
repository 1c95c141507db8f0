"""Comparisons of a shop run (Kafka topics, Iceberg tables) with the oracle, shared by the tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from pyiceberg.catalog import Catalog

from streamsvc.dlq.records import dlq_headers
from streamsvc.generate.harness import ShopRun, shop_module

oracle = shop_module("oracle")
GOLD_COLUMNS = {
    "click_sessions": ("window_start", "window_end", "user_id", "clicks", "checkouts"),
    "revenue_1m": ("window_start", "window_end", "country", "revenue_cents", "orders"),
    "revenue_5m": ("window_start", "window_end", "country", "revenue_cents", "orders"),
}


def topic_values(run: ShopRun, logical: str) -> Counter[bytes]:
    return Counter(
        oracle.canonical(orjson.loads(m.value())) for m in run.read(logical) if m.value() is not None
    )


def dlq_stages(run: ShopRun, source: str) -> Counter[str]:
    """Stages of the pipeline's own dead letters for `source` (the sinks write theirs there too)."""
    stages: Counter[str] = Counter()
    for m in run.read(f"{run.topic(source)}.dlq"):
        h = dlq_headers(m.headers())
        if h["dlq.app"] == run.app_id:
            stages[h["dlq.stage"]] += 1
    return stages


def table_rows(catalog: Catalog, table: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    return catalog.load_table(table).scan().to_arrow().select(list(columns)).to_pylist()


def silver(catalog: Catalog, table: str, columns: tuple[str, ...]) -> dict[int, dict[str, Any]]:
    rows = table_rows(catalog, f"shop_silver.{table}", columns)
    assert len({r["id"] for r in rows}) == len(rows), f"duplicate keys in shop_silver.{table}"
    return {r["id"]: r for r in rows}


def check_tables(catalog: Catalog, want: Any) -> None:
    """Every shop table equals the oracle."""
    for table, columns in GOLD_COLUMNS.items():
        got = Counter(oracle.canonical(r) for r in table_rows(catalog, f"shop_gold.{table}", columns))
        assert got == want.gold(f"shop.{table}"), f"shop_gold.{table} != oracle"
    for table in ("customers", "orders"):
        bronze = catalog.load_table(f"shop_bronze.{table}").scan().to_arrow()
        assert bronze.num_rows == want.bronze[table], f"shop_bronze.{table} rows"
        rows = next(iter(want.silver[table].values()))
        assert silver(catalog, table, tuple(rows)) == {k: dict(v) for k, v in want.silver[table].items()}
