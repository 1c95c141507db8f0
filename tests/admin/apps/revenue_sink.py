"""The Iceberg sink of the revenue application's output topic (table name from TEST_SINK_TABLE)."""

from __future__ import annotations

import os

from streamsvc.sinks.iceberg import IcebergSinkSpec

sink = IcebergSinkSpec(
    name="revenue",
    source="revenue",
    table=os.environ.get("TEST_SINK_TABLE", "admin.revenue"),
    commit_interval_s=0.5,
)
