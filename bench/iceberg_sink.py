"""Benchmark: Kafka -> Iceberg through the exactly-once sink vs a raw pyiceberg append, same rows, one run.

    .venv/bin/python -m bench.iceberg_sink --records 200000                       # SQLite
    .venv/bin/python -m bench.iceberg_sink --records 200000 --catalogs sqlite,rest  # + REST + S3
    .venv/bin/python -m bench.iceberg_sink --latency-commits 500      # commit latency, maintenance on/off

Throughput mode pre-loads JSON events into a fresh topic on the local broker and measures, one child
process after the other on the same data: the raw confluent-kafka consume-and-discard rate (the limit of
any sink that must consume), then per catalog (`sqlite`: SQL catalog + local warehouse; `rest`: the
Iceberg REST fixture + versitygw S3 of `streamsvc dev lake`, started for the run on free ports)
`python -m streamsvc.cli.iceberg sink ... --until-caught-up` (commit on size every `--commit-rows`), and
a plain `Table.append` of the very rows the sink wrote (read back into memory) to a fresh table in
batches of the same size: the limit of pyiceberg with that catalog. The sink is reported over the
child's whole life (start-up and group join included) and over its steady state (first to last
snapshot, rows after the first commit).

Latency mode runs the agent in-process over `--latency-commits` commits of `--latency-rows` rows, once
with in-agent maintenance every `--maintain-every` commits and once without, and reports the median
commit duration of the first and last 50 commits.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Producer

from bench.passthrough import run_raw_consume
from streamsvc.config import Settings
from streamsvc.dev import kafka, lake
from streamsvc.observability.logging import configure_logging
from streamsvc.runtime.topics import admin_client, delete_topics, ensure_topics
from streamsvc.sinks.iceberg.agent import IcebergSinkAgent
from streamsvc.sinks.iceberg.catalog import CatalogConfig, config_env, load_catalog_config, make_catalog
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec

ROOT = Path(__file__).resolve().parents[1]
SPEC = """
import os
from streamsvc.sinks.iceberg import IcebergSinkSpec
sink = IcebergSinkSpec(
    name="bench", source="bench", table="bench.events",
    commit_interval_s=600, max_rows=int(os.environ["BENCH_COMMIT_ROWS"]), max_bytes=1 << 40,
)
"""


def preload(bootstrap: str, topic: str, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
    for i in range(n):
        event = {
            "id": i,
            "auction": rng.randrange(10_000),
            "bidder": rng.randrange(100_000),
            "price": round(rng.random() * 1000, 2),
            "region": f"r{i % 8}",
            "ts": 1_700_000_000_000 + i,
        }
        while True:
            try:
                producer.produce(topic, orjson.dumps(event), str(i % 1000).encode())
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) != 0:
        raise SystemExit("pre-load: records left undelivered")


def catalog_config(tmp: Path) -> CatalogConfig:
    return CatalogConfig(uri=f"sqlite:///{tmp / 'catalog.db'}", warehouse=(tmp / "warehouse").as_uri())


def run_sink(
    bootstrap: str, topic: str, tmp: Path, config: CatalogConfig, commit_rows: int
) -> tuple[float, float, int]:
    """(wall seconds, steady-state seconds, steady-state rows) of the sink child process."""
    spec = tmp / "bench_spec.py"
    spec.write_text(SPEC)
    env = {
        **os.environ,
        **config_env(config),
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "STREAMSVC_TOPIC_BENCH": topic,
        "STREAMSVC_BATCH_SIZE": "5000",
        "BENCH_COMMIT_ROWS": str(commit_rows),
    }
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "streamsvc.cli.iceberg", "--log-level", "WARNING", "sink", str(spec),
         "--until-caught-up"],
        env=env, cwd=ROOT, capture_output=True, timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"sink failed ({proc.returncode}): {proc.stderr.decode()[-3000:]}")
    table = make_catalog(config).load_table("bench.events")
    snaps = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
    data = [s for s in snaps if s.summary is not None and int(s.summary["added-records"] or 0) > 0]
    steady_rows = sum(int(s.summary["added-records"] or 0) for s in data[1:] if s.summary is not None)
    steady_s = (data[-1].timestamp_ms - data[0].timestamp_ms) / 1000 if len(data) > 1 else 0.0
    return wall, steady_s, steady_rows


def raw_append(config: CatalogConfig, batch_rows: int) -> tuple[int, float, int]:
    """Append the rows the sink wrote to a fresh table in `batch_rows` batches: (rows, seconds, commits)."""
    catalog = make_catalog(config)
    rows = catalog.load_table("bench.events").scan().to_arrow().combine_chunks()
    catalog.create_namespace_if_not_exists("raw")
    table = catalog.create_table("raw.events", rows.schema)
    batches = [rows.slice(i, batch_rows) for i in range(0, rows.num_rows, batch_rows)]
    started = time.perf_counter()
    for batch in batches:
        table.append(batch)
    return rows.num_rows, time.perf_counter() - started, len(batches)


def measure_catalog(
    name: str, config: CatalogConfig, bootstrap: str, topic: str, tmp: Path, args: argparse.Namespace
) -> list[tuple[str, int, float]]:
    """(row label, rows, seconds) of the sink and the raw append on one catalog."""
    wall, steady_s, steady_rows = run_sink(bootstrap, topic, tmp, config, args.commit_rows)
    n, raw_s, commits = raw_append(config, args.commit_rows)
    if n != args.records:
        raise SystemExit(f"{name}: the sink wrote {n} rows, expected {args.records}")
    out = [(f"sink on {name}, whole child process (start-up, group join)", n, wall)]
    if steady_s > 0:
        out.append((f"sink on {name}, steady state (1st -> last snapshot)", steady_rows, steady_s))
    out.append((f"raw pyiceberg append on {name} ({commits} x {args.commit_rows} rows, in memory)", n, raw_s))
    return out


def throughput(args: argparse.Namespace, bootstrap: str) -> None:
    admin = admin_client(bootstrap)
    topic = f"bench.iceberg.{uuid.uuid4().hex[:8]}"
    ensure_topics(admin, {topic: args.partitions})
    catalogs = [c.strip() for c in args.catalogs.split(",") if c.strip()]
    rest_lake = lake.LocalLake.ephemeral() if "rest" in catalogs else None
    rows: list[tuple[str, int, float]] = []
    try:
        t0 = time.perf_counter()
        preload(bootstrap, topic, args.records)
        print(f"pre-loaded {args.records} records in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        raw = run_raw_consume(bootstrap, topic, args.records, 5000)
        rows.append(("raw consume-and-discard of the same topic (the limit)", raw.records, raw.active_s))
        if rest_lake is not None:
            lake.start(rest_lake)
        for name in catalogs:
            with tempfile.TemporaryDirectory(prefix="bench-iceberg-") as d:
                if name == "sqlite":
                    config = catalog_config(Path(d))
                elif name == "rest" and rest_lake is not None:
                    config = load_catalog_config(env=rest_lake.client_env())
                else:
                    raise SystemExit(f"unknown catalog {name!r}: use sqlite, rest")
                rows += measure_catalog(
                    name if name == "sqlite" else "REST + S3", config, bootstrap, topic, Path(d), args
                )
    finally:
        delete_topics(admin, [topic, f"{topic}.dlq"])
        if rest_lake is not None:
            lake.stop(rest_lake)
            shutil.rmtree(rest_lake.run_dir, ignore_errors=True)
    print(f"\n`{' '.join(sys.argv)}` ({args.partitions} partitions, commit every {args.commit_rows} rows)\n")
    print("| path | rows | seconds | rows/s |")
    print("| --- | ---: | ---: | ---: |")
    for label, n, seconds in rows:
        print(f"| {label} | {n} | {seconds:.2f} | {n / seconds:,.0f} |")


def latency_run(
    bootstrap: str, topic: str, commits: int, rows: int, maintain_every: int
) -> tuple[list[float], list[float], int]:
    with tempfile.TemporaryDirectory(prefix="bench-iceberg-lat-") as d:
        config = catalog_config(Path(d))
        settings = Settings(
            bootstrap_servers=bootstrap,
            app_id=f"bench-lat-{uuid.uuid4().hex[:8]}",
            instance_id="0",
            topics={"bench": topic},
            batch_size=rows,
        )
        spec = IcebergSinkSpec(
            name="bench",
            source="bench",
            table="bench.latency",
            commit_interval_s=600,
            max_rows=rows,
            maintain_every_commits=maintain_every,
            maintain_retain_last=10,
        )
        agent = IcebergSinkAgent(spec, settings, make_catalog(config), until_caught_up=True)
        agent.run(threading.Event())
        table = make_catalog(config).load_table("bench.latency")
        if agent.commits < commits:
            raise SystemExit(f"only {agent.commits} commits (expected {commits})")
        return list(agent.commit_seconds), list(agent.maintain_seconds), len(table.snapshots())


def latency(args: argparse.Namespace, bootstrap: str) -> None:
    admin = admin_client(bootstrap)
    topic = f"bench.iceberg.lat.{uuid.uuid4().hex[:8]}"
    ensure_topics(admin, {topic: 1})
    try:
        preload(bootstrap, topic, args.latency_commits * args.latency_rows)
        results = {
            f"maintenance every {args.maintain_every} commits": latency_run(
                bootstrap, topic, args.latency_commits, args.latency_rows, args.maintain_every
            ),
            "no maintenance": latency_run(bootstrap, topic, args.latency_commits, args.latency_rows, 0),
        }
    finally:
        delete_topics(admin, [topic, f"{topic}.dlq"])
    print(f"\n`{' '.join(sys.argv)}` ({args.latency_commits} commits of {args.latency_rows} rows)\n")
    print("| run | first-50 median ms | last-50 median ms | ratio | maintenance runs (median ms) | "
          "snapshots at end |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, (secs, maint, snaps) in results.items():
        first, last = statistics.median(secs[:50]) * 1000, statistics.median(secs[-50:]) * 1000
        m = f"{len(maint)} ({statistics.median(maint) * 1000:.0f})" if maint else "0"
        print(f"| {name} | {first:.1f} | {last:.1f} | {last / first:.2f} | {m} | {snaps} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--commit-rows", type=int, default=50_000)
    p.add_argument("--catalogs", default="sqlite", help="comma-separated: sqlite, rest (REST + S3 lake)")
    p.add_argument("--latency-commits", type=int, default=0, help="run the commit-latency mode instead")
    p.add_argument("--latency-rows", type=int, default=20)
    p.add_argument("--maintain-every", type=int, default=50)
    p.add_argument("--bootstrap", default=os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS"))
    args = p.parse_args()
    configure_logging("WARNING")
    bootstrap = args.bootstrap or kafka.start(kafka.LocalKafka.from_env())
    if args.latency_commits:
        latency(args, bootstrap)
    else:
        throughput(args, bootstrap)


if __name__ == "__main__":
    main()
