"""Iceberg sink metrics (BRIEF §3.9): commit duration, commits by outcome, rows, snapshots, files."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

LABELS = ("app", "agent", "table")

COMMIT_DURATION = Histogram(
    "streamsvc_iceberg_commit_duration_seconds",
    "Time to write data files and commit one Iceberg snapshot (including retries).",
    LABELS,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
COMMITS = Counter(
    "streamsvc_iceberg_commits_total",
    "Iceberg commit attempts by outcome (committed, conflict, fenced, unknown).",
    [*LABELS, "outcome"],
)
ROWS_WRITTEN = Counter("streamsvc_iceberg_rows_written_total", "Rows committed to Iceberg tables.", LABELS)
SNAPSHOTS = Gauge("streamsvc_iceberg_snapshots", "Snapshots retained in the table metadata.", LABELS)
DATA_FILES = Gauge("streamsvc_iceberg_data_files", "Data files in the current snapshot.", LABELS)
TABLE_ROWS = Gauge("streamsvc_iceberg_table_rows", "Rows in the table's current snapshot.", LABELS)
OFFSET_LAG = Gauge(
    "streamsvc_iceberg_offset_lag_records",
    "Records in the source topic beyond the offsets the table holds (sum over assigned partitions).",
    LABELS,
)
LAST_SNAPSHOT = Gauge(
    "streamsvc_iceberg_last_snapshot_timestamp_seconds",
    "Commit time of the table's current snapshot.",
    LABELS,
)


def observe_table(labels: dict[str, str], table: Any) -> None:
    """Export snapshot count, data files, rows and snapshot time of a pyiceberg `Table`."""
    SNAPSHOTS.labels(**labels).set(len(table.metadata.snapshots))
    snap = table.current_snapshot()
    summary = snap.summary if snap is not None else None
    if snap is not None:
        LAST_SNAPSHOT.labels(**labels).set(snap.timestamp_ms / 1000)
    if summary is None:
        return
    for gauge, key in ((DATA_FILES, "total-data-files"), (TABLE_ROWS, "total-records")):
        value = summary[key]
        if value is not None:
            gauge.labels(**labels).set(int(value))
