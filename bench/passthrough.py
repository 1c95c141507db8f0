"""Benchmark: exactly-once passthrough vs the raw consume-and-discard limit, same data, one run.

    .venv/bin/python bench/passthrough.py --records 1000000

Pre-loads JSON events into a fresh topic on the local broker, then runs, one child process each and one
after the other: raw confluent-kafka consume-and-discard (the limit), streamsvc passthrough under
exactly-once at 100 ms and 1 s commits, at-least-once at 1 s (EOS overhead), and a JSON
decode->map->encode topology. Reports events/s over the active period (first record to caught up),
events per CPU-second of the child process (whole process, start-up included) and the child's own
peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Producer

from streamsvc.dev import kafka
from streamsvc.runtime.topics import admin_client, delete_topics, ensure_topics

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    name: str
    records: int
    active_s: float
    cpu_s: float
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.records / self.active_s if self.active_s else 0.0

    @property
    def per_cpu_s(self) -> float:
        return self.records / self.cpu_s if self.cpu_s else 0.0


def preload(bootstrap: str, topic: str, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
    started = time.monotonic()
    for i in range(n):
        event = {
            "auction": rng.randrange(10_000),
            "bidder": rng.randrange(100_000),
            "price": rng.random() * 1000,
            "ts": 1_700_000_000_000 + i,
        }
        while True:
            try:
                producer.produce(topic, orjson.dumps(event), str(event["auction"]).encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i and i % 200_000 == 0:
            print(f"  preloaded {i:,} records ...", flush=True)
    producer.flush(120)
    print(f"  preloaded {n:,} records in {time.monotonic() - started:.1f}s", flush=True)


def run_child(name: str, cmd: list[str], env: dict[str, str], expect: int) -> Result:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **env}, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = (out.read() + err.read()).decode(errors="replace").splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed with {proc.returncode}:\n" + "\n".join(lines[-30:]))
    report = next(
        orjson.loads(line)
        for line in reversed(lines)
        if line.startswith("{") and ('"caught_up"' in line or '"active_s"' in line)
    )
    records = int(report.get("consumed", report.get("records", 0)))
    if records != expect:
        raise SystemExit(f"{name}: processed {records} records, expected {expect}")
    # The child reports its own peak RSS: rusage's ru_maxrss would count the pre-exec copy of this process.
    rss = float(report.get("peak_rss_mb", 0.0))
    return Result(name, records, float(report["active_s"]), usage.ru_utime + usage.ru_stime, rss)


def run_raw_consume(bootstrap: str, topic: str, records: int, batch_size: int) -> Result:
    """The limit: confluent-kafka consume-and-discard of `topic` in a child process."""
    command = [sys.executable, "bench/raw_consume.py", "--bootstrap", bootstrap, "--topic", topic]
    command += ["--records", str(records), "--batch", str(batch_size)]
    return run_child("raw consume-and-discard (limit)", command, {}, records)


def print_table(results: list[Result]) -> None:
    """Markdown table; the first result is the limit the others are compared with."""
    limit = results[0].rate
    print()
    print("| variant | records | events/s | % of limit | events per CPU-s | CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.records:,} | {r.rate:,.0f} | {100 * r.rate / limit:.0f} % "
            f"| {r.per_cpu_s:,.0f} | {r.cpu_s:.1f} | {r.peak_rss_mb:.0f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=5000)
    args = p.parse_args()
    bootstrap = os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS") or kafka.start(kafka.LocalKafka.from_env())
    admin = admin_client(bootstrap)
    run = uuid.uuid4().hex[:8]
    source = f"bench.{run}.input"
    ensure_topics(admin, {source: args.partitions})
    print(f"bench run {run}: {args.records:,} records on {args.partitions} partitions", flush=True)
    preload(bootstrap, source, args.records)

    results = [run_raw_consume(bootstrap, source, args.records, args.batch_size)]
    variants = [
        ("streamsvc passthrough EOS, 100 ms commits", "passthrough", "exactly_once", 100),
        ("streamsvc passthrough EOS, 1 s commits", "passthrough", "exactly_once", 1000),
        ("streamsvc passthrough at-least-once, 1 s", "passthrough", "at_least_once", 1000),
        ("streamsvc JSON map EOS, 1 s commits", "json_map", "exactly_once", 1000),
    ]
    outputs = []
    for i, (name, topology, guarantee, interval) in enumerate(variants):
        output = f"bench.{run}.out{i}"
        outputs.append(output)
        env = {
            "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
            "STREAMSVC_APP_ID": f"bench-{run}-{i}",
            "STREAMSVC_INSTANCE_ID": "bench-0",
            "STREAMSVC_GUARANTEE": guarantee,
            "STREAMSVC_COMMIT_INTERVAL_MS": str(interval),
            "STREAMSVC_BATCH_SIZE": str(args.batch_size),
            "STREAMSVC_TOPIC_INPUT": source,
            "STREAMSVC_TOPIC_OUTPUT": output,
        }
        cmd = [
            sys.executable,
            "-m",
            "streamsvc.cli.main",
            "run",
            f"bench/topologies/passthrough.py:{topology}",
            "--until-caught-up",
        ]
        print(f"running: {name} ...", flush=True)
        results.append(run_child(name, cmd, env, args.records))

    print_table(results)
    eos, alo = results[2], results[3]
    print(
        f"\nEOS overhead at 1 s commits vs at-least-once: {100 * (1 - eos.rate / alo.rate):.1f} % (events/s)"
    )
    delete_topics(admin, [source, f"{source}.dlq", *outputs])


if __name__ == "__main__":
    main()
