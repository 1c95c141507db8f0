"""A pod that dies mid-commit, for the identity tests: run as
`python -m tests.runtime.orphan_transaction BOOTSTRAP GROUP SOURCE OUTPUT TRANSACTIONAL_ID TIMEOUT_MS`.

It joins GROUP on SOURCE, consumes some records, opens a transaction with junk outputs on OUTPUT and
the consumed positions sent to the transaction (KIP-447: the group's offsets are now pending on it),
prints READY and waits to be SIGKILLed. Until the broker aborts that transaction (after TIMEOUT_MS),
a new owner of the partitions cannot read stable committed offsets.
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

ORPHAN_VALUE = b"orphan output: must never be visible to read_committed"


def main(
    bootstrap: str, group: str, source: str, output: str, transactional_id: str, timeout_ms: str
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,  # the broker's minimum: the dead member leaves the group soon
        }
    )
    consumer.subscribe([source])
    positions: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while len(positions) < 1 and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=100, timeout=0.5):
            if msg.error() is None:
                positions[msg.partition() or 0] = (msg.offset() or 0) + 1
    if not positions:
        sys.exit("orphan: consumed nothing")
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": int(timeout_ms),
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for _ in range(10):
        producer.produce(output, ORPHAN_VALUE, b"orphan")
    producer.flush(30)
    offsets = [TopicPartition(source, p, o) for p, o in sorted(positions.items())]
    producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
    print("READY", flush=True)
    time.sleep(3600)  # SIGKILLed by the test: the transaction stays open until the broker times it out


if __name__ == "__main__":
    main(*sys.argv[1:])
