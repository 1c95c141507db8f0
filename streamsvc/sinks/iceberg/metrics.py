"""Iceberg sink metrics (BRIEF §3.9): commit duration, commits by outcome, rows, snapshots, files."""

from __future__ import annotations

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
