"""Re-driving dead letters into their source topics, transactionally and idempotently.

Each chosen record goes back to `dlq.source.topic`, same partition, with its original key, value,
timestamp and headers (the `dlq.*` ones removed) plus `dlq.redriven.from = <dlq topic>:<partition>:
<offset>`. Every re-driven record is also written to a compacted ledger topic `<dlq topic>.redriven`
(key `<partition>:<offset>`) in the same transaction. The producer's `transactional.id` is fixed per
DLQ topic, and the ledger is read only after `init_transactions()`: a concurrent or crashed earlier
re-drive of the same DLQ is fenced or finished first, so a re-run re-drives nothing twice.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import KafkaException, Producer

from streamsvc.admin.connection import Connection
from streamsvc.admin.dlq import DeadLetter, Selection, read_dead_letters
from streamsvc.errors import ConfigError, StreamsvcError
from streamsvc.runtime.topics import ensure_topics, iter_records, partition_counts

REDRIVEN_FROM = "dlq.redriven.from"
LEDGER_SUFFIX = ".redriven"
LEDGER_CONFIG = {"cleanup.policy": "compact"}
TXN_RECORDS = 5_000  # records per transaction on large re-drives


def ledger_topic(dlq_topic: str) -> str:
    return dlq_topic + LEDGER_SUFFIX


def transactional_id(dlq_topic: str) -> str:
    return f"streamsvc-redrive.{dlq_topic}"


@dataclass
class RedriveReport:
    """What a re-drive did (or, on a dry run, would do)."""

    dlq_topic: str
    executed: bool
    chosen: list[DeadLetter] = field(default_factory=list)
    already: int = 0  # chosen by the selection but re-driven before
    unroutable: list[DeadLetter] = field(default_factory=list)  # no usable dlq.source.* headers

    @property
    def by_destination(self) -> Counter[tuple[str, str]]:
        return Counter((r.source_topic or "?", r.stage) for r in self.chosen)

    def render(self, limit: int = 20) -> str:
        verb = "re-driven" if self.executed else "to re-drive (dry run)"
        out = [f"{len(self.chosen)} record(s) {verb} from {self.dlq_topic}; {self.already} already re-driven"]
        if self.unroutable:
            out.append(f"{len(self.unroutable)} record(s) skipped: no dlq.source.topic/partition header")
        fmt = "{:<50} {:<10} {:<8}"
        if self.chosen:
            out.append(fmt.format("TOPIC", "STAGE", "RECORDS"))
            out += [fmt.format(t, s, n) for (t, s), n in sorted(self.by_destination.items())]
            out.append("")
            out += [
                f"  {r.partition}:{r.offset} -> {r.source_topic}:{r.source_partition} "
                f"[{r.stage}] {r.error_class}"
                for r in self.chosen[:limit]
            ]
            if len(self.chosen) > limit:
                out.append(f"  ... and {len(self.chosen) - limit} more")
        return "\n".join(out)


def redriven_already(conn: Connection, dlq_topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of every dead letter of `dlq_topic` re-driven by a committed re-drive."""
    ledger = ledger_topic(dlq_topic)
    if ledger not in partition_counts(conn.admin(), [ledger]):
        return set()
    done: set[tuple[int, int]] = set()
    for msg in iter_records(conn.bootstrap, ledger, True, 120.0, conn.properties):
        p, _, o = (msg.key() or b"").decode().partition(":")
        if p.isdigit() and o.isdigit() and msg.value() is not None:
            done.add((int(p), int(o)))
    return done


def redrive(
    conn: Connection,
    dlq_topic: str,
    selection: Selection,
    execute: bool,
    say: Callable[[str], None] = lambda _line: None,
    on_record: Callable[[], None] | None = None,
) -> RedriveReport:
    """Re-drive the dead letters of `dlq_topic` that `selection` accepts and no earlier re-drive took."""
    producer = _transactional_producer(conn, dlq_topic) if execute else None
    done = redriven_already(conn, dlq_topic)  # after init_transactions: see the producer's docstring
    report = RedriveReport(dlq_topic, execute)
    for rec in read_dead_letters(conn, dlq_topic, selection, on_record):
        if (rec.partition, rec.offset) in done:
            report.already += 1
        elif rec.source_topic is None or rec.source_partition is None:
            report.unroutable.append(rec)
        else:
            report.chosen.append(rec)
    _check_destinations(conn, report.chosen)
    if producer is not None and report.chosen:
        _produce_all(producer, dlq_topic, report.chosen, say)
    return report


def _transactional_producer(conn: Connection, dlq_topic: str) -> Producer:
    ensure_topics(conn.admin(), {ledger_topic(dlq_topic): 1}, LEDGER_CONFIG)
    producer = conn.producer(
        **{
            "transactional.id": transactional_id(dlq_topic),
            "transaction.timeout.ms": 60_000,
            "linger.ms": 5,
            "partitioner": "murmur2_random",
        }
    )
    try:
        producer.init_transactions(60)
    except KafkaException as exc:
        raise StreamsvcError(f"cannot start the re-drive transaction: {exc.args[0]}") from exc
    return producer


def _check_destinations(conn: Connection, chosen: list[DeadLetter]) -> None:
    topics = sorted({r.source_topic for r in chosen if r.source_topic})
    counts = partition_counts(conn.admin(), topics)
    for topic in topics:
        if topic not in counts:
            raise ConfigError(f"source topic {topic} of some dead letters does not exist; create it first")
    bad = [r for r in chosen if r.source_topic and (r.source_partition or 0) >= counts[r.source_topic]]
    if bad:
        r = bad[0]
        raise ConfigError(
            f"{r.source_topic} has no partition {r.source_partition} (dead letter {r.partition}:{r.offset})"
        )


def _produce_all(
    producer: Producer, dlq_topic: str, chosen: list[DeadLetter], say: Callable[[str], None]
) -> None:
    ledger = ledger_topic(dlq_topic)
    for start in range(0, len(chosen), TXN_RECORDS):
        batch = chosen[start : start + TXN_RECORDS]
        producer.begin_transaction()
        try:
            for rec in batch:
                origin = f"{dlq_topic}:{rec.partition}:{rec.offset}"
                headers = [*rec.original_headers, (REDRIVEN_FROM, origin.encode())]
                _produce(
                    producer,
                    rec.source_topic or "",
                    rec.value,
                    rec.key,
                    rec.source_partition,
                    headers,
                    rec.timestamp_ms,
                )
                entry = orjson.dumps({"to": f"{rec.source_topic}:{rec.source_partition}", "stage": rec.stage})
                _produce(producer, ledger, entry, f"{rec.partition}:{rec.offset}".encode(), 0, None, None)
            producer.commit_transaction(120)
        except KafkaException as exc:
            # Fenced or timed out: the broker aborts it when the transaction times out.
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(60)
            raise StreamsvcError(
                f"re-drive transaction failed, nothing of it was written: {exc.args[0]} "
                f"({start} record(s) re-driven before it; run the command again)"
            ) from exc
        say(f"committed {start + len(batch)}/{len(chosen)}")


def _produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    partition: int | None,
    headers: list[tuple[str, bytes | None]] | None,
    timestamp_ms: int | None,
) -> None:
    kwargs: dict[str, object] = {"headers": headers} if headers else {}
    if partition is not None:
        kwargs["partition"] = partition
    if timestamp_ms is not None and timestamp_ms >= 0:
        kwargs["timestamp"] = timestamp_ms
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)  # type: ignore[arg-type]
            return
        except BufferError:
            producer.poll(0.05)
