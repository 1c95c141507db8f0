"""Benchmark: Nexmark Q5-lite under exactly-once (1 s commits) next to the raw consume-and-discard rate.

    .venv/bin/python -m bench.q5 --records 1000000

Pre-loads deterministic Nexmark bids (bench/nexmark.py, partition = auction % partitions, keyed by
auction), runs raw confluent-kafka consume-and-discard (the limit) and `topologies/nexmark_q5.py` under
exactly-once -- state in memory without and with time synchronisation (`max_task_idle_ms` -1 and 0),
and resident in RocksDB (`bench/topologies/nexmark_q5_rocksdb.py`) -- one child process each, then
checks every emitted window count of each against an offline
computation with the same semantics (per-partition watermark, grace; windows closed by the partition's
final watermark). A wrong result fails the run instead of producing a time.

The peers (Kafka Streams, Flink, Quix Streams, bytewax) run side by side in `bench/run`
(bench/harness.py), which also reports CPU over the active period and the result latency.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
from confluent_kafka import Producer

from bench.nexmark import Bid, bids
from bench.passthrough import print_table, run_child, run_raw_consume
from streamsvc.dev import kafka
from streamsvc.runtime.topics import admin_client, delete_topics, ensure_topics, read_all

SIZE, ADVANCE, GRACE = 10_000, 2_000, 1_000
VARIANTS = [  # (name, topology, max_task_idle_ms)
    ("streamsvc Q5-lite EOS, in-memory, no time sync", "topologies/nexmark_q5.py", "-1"),
    ("streamsvc Q5-lite EOS, in-memory, time sync on", "topologies/nexmark_q5.py", "0"),
    ("streamsvc Q5-lite EOS, RocksDB store, time sync on", "bench/topologies/nexmark_q5_rocksdb.py", "0"),
]


def oracle(per_partition: dict[int, list[Bid]]) -> Counter[tuple[str, int, int, int]]:
    """Final hopping-window counts per auction, one record at a time per partition."""
    out: Counter[tuple[str, int, int, int]] = Counter()
    for recs in per_partition.values():
        wm = -(2**62)
        counts: Counter[tuple[int, int]] = Counter()
        for bid in recs:
            wm = max(wm, bid.date_time)
            first = (bid.date_time - SIZE) // ADVANCE * ADVANCE + ADVANCE
            for start in range(first, bid.date_time + 1, ADVANCE):
                if start + SIZE + GRACE > wm:
                    counts[(bid.auction, start)] += 1
        for (auction, start), n in counts.items():
            if start + SIZE + GRACE <= wm:
                out[(str(auction), start, start + SIZE, n)] += 1
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=5000)
    args = p.parse_args()
    bootstrap = os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS") or kafka.start(kafka.LocalKafka.from_env())
    admin = admin_client(bootstrap)
    run = uuid.uuid4().hex[:8]
    state_dir = Path(tempfile.mkdtemp(prefix="bench-q5-state-"))
    source, output = f"bench.{run}.bids", f"bench.{run}.bid_counts"
    ensure_topics(admin, {source: args.partitions})
    print(f"Q5-lite run {run}: {args.records:,} bids on {args.partitions} partitions", flush=True)
    per_partition: dict[int, list[Bid]] = {i: [] for i in range(args.partitions)}
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
    started = time.monotonic()
    for bid in bids(args.records, seed=5):
        part = bid.auction % args.partitions
        per_partition[part].append(bid)
        while True:
            try:
                producer.produce(
                    source, orjson.dumps(bid.to_json_dict()), str(bid.auction).encode(), partition=part
                )
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    print(f"  preloaded in {time.monotonic() - started:.1f}s", flush=True)

    raw = run_raw_consume(bootstrap, source, args.records, args.batch_size)
    env = {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": f"bench-q5-{run}",
        "STREAMSVC_INSTANCE_ID": "bench-0",
        "STREAMSVC_GUARANTEE": "exactly_once",
        "STREAMSVC_COMMIT_INTERVAL_MS": "1000",
        "STREAMSVC_BATCH_SIZE": str(args.batch_size),
        "STREAMSVC_TOPIC_BIDS": source,
        "STREAMSVC_TOPIC_BID_COUNTS": output,
    }
    expected = oracle(per_partition)
    results = [raw]
    gate: dict[str, str] = {}
    outputs, apps = [], []
    for name, topology, idle in VARIANTS:
        out, app = f"{output}.{len(outputs)}", f"bench-q5-{run}-{len(outputs)}"
        outputs.append(out)
        apps.append(app)
        print(f"running: {name} ...", flush=True)
        variant_env = {**env, "STREAMSVC_APP_ID": app, "STREAMSVC_TOPIC_BID_COUNTS": out}
        variant_env["STREAMSVC_MAX_TASK_IDLE_MS"] = idle
        variant_env["STREAMSVC_STATE_DIR"] = str(state_dir)
        command = [sys.executable, "-m", "streamsvc.cli.main", "run", topology, "--until-caught-up"]
        result = run_child(name, command, variant_env, args.records)
        results.append(result)
        gate[name] = check(bootstrap, out, expected)
    for name, verdict in gate.items():
        print(f"  correctness gate, {name}: {verdict}")
    print_table(results)
    changelogs = [f"{app}.nexmark-q5-lite.bids-per-auction.changelog" for app in apps]
    delete_topics(admin, [source, f"{source}.dlq", *outputs, *changelogs])
    shutil.rmtree(state_dir, ignore_errors=True)
    # A wrong streamsvc result fails the run; a peer's differences are reported in its gate line.
    wrong = [name for name, _, _ in VARIANTS if not gate[name].startswith("equal")]
    if wrong:
        raise SystemExit(f"WRONG RESULT: {wrong} do not equal the offline computation (see the gate lines)")


def check(bootstrap: str, topic: str, expected: Counter[tuple[str, int, int, int]]) -> str:
    """Compare a variant's window counts with the offline computation; a wrong result is a failure."""
    got: Counter[tuple[str, int, int, int]] = Counter()
    for msg in read_all(bootstrap, topic):
        v = orjson.loads(msg.value() or b"null")
        got[((msg.key() or b"").decode(), v["start"], v["end"], v["value"])] += 1
    if got == expected:
        return f"equal ({sum(got.values()):,} window counts)"
    missing, extra = expected - got, got - expected
    return (
        f"WRONG: {sum(missing.values())} window counts missing, {sum(extra.values())} extra "
        f"(of {sum(expected.values())}); missing e.g. {sorted(missing)[:3]}, extra e.g. {sorted(extra)[:3]}"
    )


if __name__ == "__main__":
    main()
