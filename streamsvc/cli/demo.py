"""`streamsvc demo`: the validation/normalisation pipeline end to end on the local broker.

Generates payment events with a share of malformed ones, runs `topologies/demo_validation.py` under
exactly-once until it has caught up, then prints consumed/emitted/dead-lettered counts and a sample
of each output, read back with read_committed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Producer

from streamsvc.config import load_settings
from streamsvc.dev import kafka
from streamsvc.dlq.records import dlq_headers
from streamsvc.runtime.topics import admin_client, ensure_topics, read_all
from streamsvc.runtime.worker import Worker
from streamsvc.topology.loader import load_module

DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "demo_validation.py"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the demo validation pipeline on the local Kafka")
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--malformed", type=float, default=0.05, help="share of malformed records")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--topology", default=str(DEFAULT_TOPOLOGY))
    p.set_defaults(func=run)


def _bootstrap() -> str:
    return os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS") or kafka.start(kafka.LocalKafka.from_env())


def run(args: argparse.Namespace) -> int:
    module = load_module(args.topology)
    bootstrap = _bootstrap()
    run_id = time.strftime("%Y%m%d%H%M%S")
    topics = {name: f"demo.{run_id}.{name}" for name in ("events", "events_clean", "events_flagged")}
    settings = load_settings().with_overrides(
        bootstrap_servers=bootstrap, app_id=f"demo-{run_id}", instance_id="demo", topics=topics
    )
    ensure_topics(admin_client(bootstrap), {topics["events"]: args.partitions})

    records = module.sample_events(args.records, args.malformed)
    print(f"producing {len(records)} events to {topics['events']} ...", flush=True)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"})
    for key, value in records:
        while True:
            try:
                producer.produce(topics["events"], value, key)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)

    print("running the pipeline (exactly-once) until it has caught up ...", flush=True)
    started = time.monotonic()
    worker = Worker([module.topology], settings, until_caught_up=True)
    code = worker.run()
    elapsed = time.monotonic() - started
    if code != 0:
        print(f"the worker exited with code {code}")
        return code
    totals = worker.agents[0].totals
    source = topics["events"]
    dead = sum(n for (t, _), n in totals.dead_lettered.items() if t == source)
    print(f"\ndone in {elapsed:.1f}s")
    print(f"consumed      {totals.consumed[source]:>8}")
    print(f"emitted       {totals.emitted[source]:>8}")
    print(f"filtered      {totals.filtered[source]:>8}")
    by_stage: Counter[str] = Counter()
    for (_, stage), n in totals.dead_lettered.items():
        by_stage[stage] += n
    print(f"dead-lettered {dead:>8}  by stage {dict(sorted(by_stage.items()))}")
    balanced = totals.consumed[source] == totals.emitted[source] + totals.filtered[source] + dead
    print(f"invariant consumed = emitted + filtered + dead-lettered: {'holds' if balanced else 'BROKEN'}")

    for name in ("events_clean", "events_flagged", "events.dlq"):
        topic = topics.get(name) or f"{source}{settings.dlq_suffix}"
        msgs = read_all(bootstrap, topic)
        print(f"\n{topic}: {len(msgs)} records (read_committed); sample:")
        for msg in msgs[:3]:
            value = msg.value() or b""
            if name == "events.dlq":
                h = dlq_headers(msg.headers())
                print(f"  stage={h['dlq.stage']} error={h['dlq.error.class']}: {h['dlq.error.message'][:70]}")
                print(f"    original bytes: {value[:80]!r}")
            else:
                print(f"  {value.decode(errors='replace')[:110]}")
    return 0 if balanced else 1
