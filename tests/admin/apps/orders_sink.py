"""An Iceberg sink of the revenue application's *input* topic, committing every 100 rows (many snapshots)."""

from __future__ import annotations

from streamsvc.sinks.iceberg import IcebergSinkSpec

sink = IcebergSinkSpec(
    name="orders", source="orders", table="admin.orders", commit_interval_s=0.5, max_rows=100
)
