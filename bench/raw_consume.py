"""The limit: confluent-kafka consume-and-discard of a topic, batched, read_committed. Prints JSON."""

from __future__ import annotations

import argparse
import sys
import time
import uuid

import orjson
from confluent_kafka import Consumer, TopicPartition

from streamsvc.observability.metrics import peak_rss_mb


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--batch", type=int, default=1000)
    args = p.parse_args()
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    meta = consumer.list_topics(args.topic, timeout=30)
    consumer.assign([TopicPartition(args.topic, p, 0) for p in meta.topics[args.topic].partitions])
    seen, first, first_at = 0, None, 0.0
    while seen < args.records:
        for msg in consumer.consume(num_messages=args.batch, timeout=1.0):
            if msg.error() is None:
                seen += 1
                if first is None:
                    first = time.monotonic()
                    first_at = time.time()
    active = time.monotonic() - (first or time.monotonic())
    consumer.close()
    report = {"records": seen, "active_s": active, "first_at": first_at, "peak_rss_mb": peak_rss_mb()}
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


if __name__ == "__main__":
    main()
