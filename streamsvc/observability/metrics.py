"""Prometheus metrics (BRIEF §3.9): `streamsvc_` prefix, base units, counters end in `_total`.

Record counters are advanced only when a transaction commits, so they describe committed output and
the accounting invariant holds on them exactly:
consumed = emitted + filtered + dead_lettered (+ late).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LABELS = ("app", "agent")

RECORDS_CONSUMED = Counter(
    "streamsvc_records_consumed_total", "Records consumed and committed.", [*LABELS, "topic"]
)
RECORDS_EMITTED = Counter(
    "streamsvc_records_emitted_total",
    "Consumed records that produced at least one output.",
    [*LABELS, "topic"],
)
RECORDS_FILTERED = Counter(
    "streamsvc_records_filtered_total", "Consumed records that produced no output.", [*LABELS, "topic"]
)
RECORDS_DEAD_LETTERED = Counter(
    "streamsvc_records_dead_lettered_total",
    "Consumed records routed to a dead-letter topic, by stage and error class (bounded: see "
    "`error_class_label`).",
    [*LABELS, "topic", "stage", "error_class"],
)
RECORDS_LATE = Counter(
    "streamsvc_records_late_total", "Records beyond the window grace period.", [*LABELS, "topic"]
)
RECORDS_PRODUCED = Counter(
    "streamsvc_records_produced_total", "Records written to output and DLQ topics.", [*LABELS, "topic"]
)
TRANSACTIONS_COMMITTED = Counter(
    "streamsvc_transactions_committed_total", "Kafka transactions (or offset commits) completed.", LABELS
)
TRANSACTIONS_ABORTED = Counter(
    "streamsvc_transactions_aborted_total", "Kafka transactions aborted and rewound.", LABELS
)
CONSECUTIVE_ABORTS = Gauge(
    "streamsvc_consecutive_aborts",
    "Aborts since the last commit that named no culprit; at max_consecutive_aborts the agent is not ready.",
    LABELS,
)
COMMIT_DURATION = Histogram(
    "streamsvc_commit_duration_seconds",
    "Time to send offsets and commit a transaction.",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PROCESSING_DURATION = Histogram(
    "streamsvc_processing_duration_seconds",
    "Time to process one consumed batch (decode, operators, produce).",
    LABELS,
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SIZE = Histogram(
    "streamsvc_batch_records",
    "Records per consumed batch.",
    LABELS,
    buckets=(1, 10, 100, 500, 1000, 5000, 10000),
)
REBALANCES = Counter("streamsvc_rebalances_total", "Partition assignment changes.", [*LABELS, "kind"])
ASSIGNED_PARTITIONS = Gauge("streamsvc_assigned_partitions", "Partitions currently assigned.", LABELS)
CONSUMER_LAG = Gauge(
    "streamsvc_consumer_lag_records",
    "Records between the agent's committed position and the partition's end (last stable offset under "
    "read_committed), per assigned partition; end offsets from librdkafka statistics.",
    [*LABELS, "topic", "partition"],
)
STATE_RESTORED = Counter(
    "streamsvc_state_restored_records_total",
    "Changelog entries replayed into state stores.",
    [*LABELS, "store"],
)
STATE_RESTORE_REMAINING = Gauge(
    "streamsvc_state_restore_remaining_records",
    "Changelog offsets left to read by the restore in progress (0 when restored).",
    [*LABELS, "store", "partition"],
)
STATE_RESTORE_TOTAL = Gauge(
    "streamsvc_state_restore_total_records",
    "Changelog offsets the last restore of the partition had to read.",
    [*LABELS, "store", "partition"],
)
END_TO_END_LATENCY = Histogram(
    "streamsvc_end_to_end_latency_seconds",
    "Source record timestamp to the commit that made its outcome visible (sampled: the oldest and the "
    "newest record of every batch).",
    LABELS,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
LAST_COMMIT = Gauge(
    "streamsvc_last_commit_timestamp_seconds",
    "Unix time of the last successful commit (the agent's start before the first).",
    LABELS,
)
PARTITION_WATERMARK = Gauge(
    "streamsvc_watermark_timestamp_seconds",
    "Event-time watermark per partition of the windowed sources (max event time - allowed lateness).",
    [*LABELS, "partition"],
)
AGENT_INFO = Gauge(
    "streamsvc_agent_info",
    "Always 1; labels say what runs: agent kind, guarantee and transactional id.",
    [*LABELS, "kind", "guarantee", "transactional_id"],
)


WATERMARK_LAG = Gauge(
    "streamsvc_watermark_lag_seconds",
    "Wall clock minus the agent's event-time watermark (minimum over active windowed partitions).",
    LABELS,
)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM, which starts afresh at exec), in MiB; 0 if unknown."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


LAST_POLL = Gauge("streamsvc_last_poll_timestamp_seconds", "Unix time of the last poll-loop turn.", LABELS)


MAX_ERROR_CLASSES = 32
_error_classes: dict[tuple[str, str], set[str]] = {}


def error_class_label(app: str, agent: str, error_class: str) -> str:
    """`error_class`, or "other" once this agent has seen `MAX_ERROR_CLASSES` distinct classes: operator
    code can raise anything, and every label value is a time series kept forever."""
    seen = _error_classes.setdefault((app, agent), set())
    if error_class in seen:
        return error_class
    if len(seen) >= MAX_ERROR_CLASSES:
        return "other"
    seen.add(error_class)
    return error_class


def count_dead_lettered(labels: dict[str, str], topic: str, stage: str, error_class: str, n: int = 1) -> None:
    """Advance `streamsvc_records_dead_lettered_total` with a bounded `error_class` label."""
    cls = error_class_label(labels["app"], labels["agent"], error_class)
    RECORDS_DEAD_LETTERED.labels(**labels, topic=topic, stage=stage, error_class=cls).inc(n)
