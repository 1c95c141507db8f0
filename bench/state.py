"""Benchmark: state at scale -- a windowed count with 1,000,000 keys of state, in memory and in RocksDB.

    .venv/bin/python -m bench.state --keys 1000000

Pre-loads one record per key (all in one open one-hour window, 4 partitions), then for each store
(`tests/topologies/stored_counts.py` with `STREAMSVC_TEST_STORE=memory|rocksdb`), one child process
each, under exactly-once: a first run until caught up (its events/s, CPU and peak RSS), then a restart
after that clean stop with no new input, timed from process start to exit, with the changelog entries
it restored and the seconds its restores took (from its `state_restored` log lines). The in-memory
store replays the whole changelog; the RocksDB store reads only the tail past its checkpoint. Both
runs bound the consumer's prefetch (`queued.max.messages.kbytes` = 16 MB), so peak RSS compares the
state. The window then is closed and every count checked (a wrong result fails the run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Producer

from bench.passthrough import ROOT, run_child
from streamsvc.dev import kafka
from streamsvc.runtime.topics import admin_client, delete_topics, end_offsets, ensure_topics, read_all

TOPOLOGY = "tests/topologies/stored_counts.py"
SIZE = 3_600_000


@dataclass
class Restart:
    wall_s: float
    restored: int
    restore_s: float


def restart(env: dict[str, str]) -> Restart:
    """A run with nothing new to process: how long the restore makes the start-up."""
    started = time.monotonic()
    cmd = [sys.executable, "-m", "streamsvc.cli.main", "run", TOPOLOGY, "--until-caught-up"]
    proc = subprocess.run(cmd, env={**os.environ, **env}, cwd=ROOT, capture_output=True, check=False)
    wall = time.monotonic() - started
    lines = (proc.stdout + proc.stderr).decode(errors="replace").splitlines()
    if proc.returncode != 0:
        raise SystemExit("restart failed:\n" + "\n".join(lines[-30:]))
    restores = [orjson.loads(line) for line in lines if '"state_restored"' in line]
    return Restart(wall, sum(r["entries"] for r in restores), sum(r["seconds"] for r in restores))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args()
    bootstrap = os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS") or kafka.start(kafka.LocalKafka.from_env())
    admin = admin_client(bootstrap)
    run = uuid.uuid4().hex[:8]
    source = f"bench.{run}.keys"
    ensure_topics(admin, {source: args.partitions})
    now = int(time.time() * 1000)
    base = now // SIZE * SIZE - 2 * SIZE
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "enable.idempotence": True})
    for i in range(args.keys):
        while True:
            try:
                producer.produce(source, orjson.dumps({"t": base + i % SIZE}), f"key-{i}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    print(f"state run {run}: {args.keys:,} keys on {args.partitions} partitions", flush=True)
    rows = []
    topics = [source, f"{source}.dlq"]
    # The same bounded prefetch for both: what is compared is the memory the state takes.
    config = Path(tempfile.mkdtemp(prefix="bench-state-conf-")) / "streamsvc.toml"
    config.write_text('[consumer]\n"queued.max.messages.kbytes" = 16384\n')
    for store in ("memory", "rocksdb"):
        app, out = f"bench-state-{run}-{store}", f"bench.{run}.{store}.counts"
        changelog = f"{app}.stored-counts.counts.changelog"
        topics += [out, changelog]
        state_dir = Path(tempfile.mkdtemp(prefix=f"bench-state-{store}-"))
        env = {
            "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
            "STREAMSVC_APP_ID": app,
            "STREAMSVC_INSTANCE_ID": "bench-0",
            "STREAMSVC_STATE_DIR": str(state_dir),
            "STREAMSVC_TEST_STORE": store,
            "STREAMSVC_TOPIC_INPUT": source,
            "STREAMSVC_TOPIC_OUTPUT": out,
            "STREAMSVC_COMMIT_INTERVAL_MS": "1000",
            "STREAMSVC_BATCH_SIZE": "5000",
            "STREAMSVC_CONFIG": str(config),
        }
        print(f"running: {store} store, first run ...", flush=True)
        first = run_child(
            f"{store} store, first run",
            [sys.executable, "-m", "streamsvc.cli.main", "run", TOPOLOGY, "--until-caught-up"],
            env,
            args.keys,
        )
        size = sum(end_offsets(admin, changelog).values())
        print(f"running: {store} store, restart after a clean stop ...", flush=True)
        again = restart(env)
        rows.append((store, first, size, again))
        shutil.rmtree(state_dir, ignore_errors=True)
    # close the window: one record far ahead per partition, then check the counts of both stores
    closer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for p in range(args.partitions):
        closer.produce(source, orjson.dumps({"t": now + 10 * SIZE}), b"closer", partition=p)
    closer.flush(60)
    print()
    print(
        "| store | keys | first run events/s | CPU s | peak RSS MB | changelog records | restart: "
        "entries restored | restore s | restart wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for store, first, size, again in rows:
        print(
            f"| {store} | {args.keys:,} | {first.rate:,.0f} | {first.cpu_s:.1f} | {first.peak_rss_mb:.0f} "
            f"| {size:,} | {again.restored:,} | {again.restore_s:.2f} | {again.wall_s:.1f} |"
        )
    verdicts = []
    for store, *_ in rows:
        app, out = f"bench-state-{run}-{store}", f"bench.{run}.{store}.counts"
        env = {
            "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
            "STREAMSVC_APP_ID": app,
            "STREAMSVC_INSTANCE_ID": "bench-0",
            "STREAMSVC_TEST_STORE": store,
            "STREAMSVC_TOPIC_INPUT": source,
            "STREAMSVC_TOPIC_OUTPUT": out,
        }
        restart(env)
        counts = [orjson.loads(m.value() or b"0") for m in read_all(bootstrap, out)]
        ok = len(counts) == args.keys and set(counts) == {1}
        verdicts.append(
            f"  correctness gate, {store}: {'equal' if ok else 'WRONG'} ({len(counts):,} windows)"
        )
    print("\n".join(verdicts))
    delete_topics(admin, topics)
    if any("WRONG" in v for v in verdicts):
        raise SystemExit("WRONG RESULT")


if __name__ == "__main__":
    main()
