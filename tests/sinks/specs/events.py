"""A JSON event sink configured by environment variables, for the sink tests' child processes."""

from __future__ import annotations

import os

from streamsvc.sinks.iceberg import IcebergSinkSpec

sink = IcebergSinkSpec(
    name="events",
    source="events",
    table=os.environ.get("TEST_SINK_TABLE", "sink.events"),
    commit_interval_s=float(os.environ.get("TEST_SINK_INTERVAL_S", "1")),
    max_rows=int(os.environ.get("TEST_SINK_MAX_ROWS", "5000")),
    partition_by=tuple(p for p in os.environ.get("TEST_SINK_PARTITION_BY", "").split(";") if p),
    maintain_every_commits=int(os.environ.get("TEST_SINK_MAINTAIN_EVERY", "0")),
)
