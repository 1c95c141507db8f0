"""Capacity inputs for docs/scaling.md: state bytes per key, restore rate, transaction commit latency.

    .venv/bin/python -m bench.capacity                                   # the single dev broker
    STREAMSVC_BOOTSTRAP_SERVERS=127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096 \\
        .venv/bin/python -m bench.capacity                               # the 3-broker cluster

1. State: a tumbling `Count` window engine with `--keys` keys open in one window: changelog bytes per
   entry (key + value as written) and Python heap bytes per open (key, window) (tracemalloc).
2. Restore: those entries written to a compacted changelog partition, then `read_changelog` +
   `WindowedAggregation.restore` timed (entries/s), and the fixed cost of restoring a one-entry
   partition (a consumer per partition).
3. Commit latency: `--commits` transactions of `--per-commit` records each, with
   `send_offsets_to_transaction`; the duration of send_offsets + commit_transaction, p50/p99.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc
import uuid

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from streamsvc.dev import kafka
from streamsvc.runtime.topics import admin_client, delete_topics, ensure_topics
from streamsvc.state.changelog import CHANGELOG_CONFIG, read_changelog, write_changes
from streamsvc.windows import Count, Tumbling, WindowedAggregation

WINDOW = Tumbling(10_000, grace_ms=1_000)


def state_size(keys: int) -> tuple[dict[bytes, bytes | None], float, float]:
    """(changelog entries, changelog bytes per entry, heap bytes per open key-window)."""
    engine = WindowedAggregation(WINDOW, Count())
    names = np.array([f"auction-{i}".encode() for i in range(keys)], dtype=object)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine.process(0, names, np.full(keys, 1_700_000_000_000, dtype=np.int64))
    heap = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    entries = engine.changes(0)
    size = sum(len(k) + len(v or b"") for k, v in entries.items())
    return entries, size / len(entries), heap / keys


def restore_rate(bootstrap: str, topic: str, entries: dict[bytes, bytes | None]) -> tuple[float, float]:
    """(entries/s for a full partition, seconds for a one-entry partition)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    write_changes(producer, topic, 0, entries, source_offset=1)
    write_changes(producer, topic, 1, dict(list(entries.items())[:1]), source_offset=1)
    assert producer.flush(120) == 0
    engine = WindowedAggregation(WINDOW, Count())
    started = time.perf_counter()
    restored = read_changelog(bootstrap, topic, 0, None)
    engine.restore(0, restored)
    full = time.perf_counter() - started
    assert len(restored) == len(entries)
    started = time.perf_counter()
    engine.restore(1, read_changelog(bootstrap, topic, 1, None))
    return len(entries) / full, time.perf_counter() - started


def commit_latency(bootstrap: str, topic: str, commits: int, per_commit: int) -> list[float]:
    """Seconds of send_offsets_to_transaction + commit_transaction, per transaction."""
    group = f"bench-capacity-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": group, "linger.ms": 5, "partitioner": "murmur2"}
    )
    producer.init_transactions(60)
    value = b"x" * 100
    took = []
    for n in range(commits):
        producer.begin_transaction()
        for i in range(per_commit):
            producer.produce(topic, value, str(i).encode())
        producer.poll(0)
        started = time.perf_counter()
        offsets = [TopicPartition(topic, 0, (n + 1) * per_commit)]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 60)
        producer.commit_transaction(60)
        took.append(time.perf_counter() - started)
    consumer.close()
    return took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=200_000)
    p.add_argument("--commits", type=int, default=200)
    p.add_argument("--per-commit", type=int, default=1_000)
    args = p.parse_args()
    bootstrap = os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS") or kafka.start(kafka.LocalKafka.from_env())
    admin = admin_client(bootstrap)
    brokers = len(admin.list_topics(timeout=10).brokers)
    run = uuid.uuid4().hex[:8]
    changelog, output = f"bench.{run}.changelog", f"bench.{run}.output"
    ensure_topics(admin, {changelog: 2}, CHANGELOG_CONFIG)
    ensure_topics(admin, {output: 4})
    try:
        entries, entry_bytes, heap_bytes = state_size(args.keys)
        rate, one_entry_s = restore_rate(bootstrap, changelog, entries)
        took = sorted(commit_latency(bootstrap, output, args.commits, args.per_commit))
    finally:
        delete_topics(admin, [changelog, output])
    p50, p99 = statistics.median(took), took[min(len(took) - 1, int(len(took) * 0.99))]
    print(f"\n{brokers} broker(s) at {bootstrap}")
    print("| figure | value |")
    print("|---|---:|")
    print(f"| changelog bytes per window entry (key + value) | {entry_bytes:.0f} |")
    print(f"| heap bytes per open key-window (tracemalloc, {args.keys:,} keys) | {heap_bytes:.0f} |")
    print(f"| restore rate, one partition of {len(entries):,} entries | {rate:,.0f} entries/s |")
    print(f"| restore of a one-entry partition (fixed cost) | {one_entry_s:.2f} s |")
    print(f"| commit latency p50, {args.per_commit:,} records per transaction | {1000 * p50:.1f} ms |")
    print(f"| commit latency p99 ({args.commits} transactions) | {1000 * p99:.1f} ms |")


if __name__ == "__main__":
    main()
