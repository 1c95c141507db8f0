"""Iceberg sinks of the shop pipeline: bronze CDC changelogs, silver current state, gold windows.

`streamsvc iceberg sink topologies/shop/sinks.py` runs them (embedded SQLite catalog by default).
"""

from __future__ import annotations

from streamsvc.generate.shop import CUSTOMERS, ORDERS
from streamsvc.serde import AvroSerde, DebeziumSerde
from streamsvc.sinks.iceberg import IcebergSinkSpec

GOLD = {
    "click_sessions": "shop.click_sessions",
    "revenue_1m": "shop.revenue_1m",
    "revenue_5m": "shop.revenue_5m",
}


def sinks(commit_interval_s: float = 10.0) -> list[IcebergSinkSpec]:
    """Every shop sink; `commit_interval_s` for all of them (the silver merge runs on the same beat)."""
    cdc = [
        IcebergSinkSpec(
            name=f"{table}-cdc",
            source=topic,
            table=f"shop_bronze.{table}",
            value_serde=DebeziumSerde(AvroSerde(None)),
            cdc=True,
            silver_table=f"shop_silver.{table}",
            key_columns=("id",),
            commit_interval_s=commit_interval_s,
            merge_interval_s=commit_interval_s,
        )
        for table, topic in (("customers", CUSTOMERS), ("orders", ORDERS))
    ]
    gold = [
        IcebergSinkSpec(
            name=f"{table}-gold",
            source=topic,
            table=f"shop_gold.{table}",
            commit_interval_s=commit_interval_s,
        )
        for table, topic in GOLD.items()
    ]
    return cdc + gold


sink = sinks()
