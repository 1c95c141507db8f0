"""The cluster tests' workload for `tests/topologies/branched_windowed.py`: generated input, a feeder that
produces it at a steady rate through broker failures, and the oracle computed from the input log itself.

The oracle reads the input back (`read_all`) rather than trusting the generator, so whatever order
the feeder's retries produced, the expected outputs are a function of the log — the Kappa contract.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from confluent_kafka import KafkaError, Message, Producer

from streamsvc.dlq.records import dlq_headers
from streamsvc.runtime.topics import read_all
from streamsvc.windows import Tumbling
from tests.topologies.branched_windowed import GRACE_MS, SIZE_MS
from tests.windows.oracle import Rec, fixed

TOPOLOGY_NAME = "branched-windowed"
Record = tuple[int, bytes, bytes]  # partition, key, value


def generate(n: int, partitions: int, seed: int, keys: int = 24, step_ms: int = 5) -> list[Record]:
    """`n` records in production order. Keys map to partitions by number (k % partitions). Event
    times advance `step_ms` per record with some disorder; 3 % lag 4 s (late unless a window is still
    open); 0.2 % are not JSON, 0.3 % fail the `n` range expectation; 60 % are windowed ("w")."""
    rng = random.Random(seed)
    # Recent past: window results carry their end as the Kafka timestamp, and the broker rejects
    # timestamps far in the future and deletes (by retention) those far in the past.
    base = int(time.time() * 1000) - n * step_ms - 600_000
    out: list[Record] = []
    for i in range(n):
        k = rng.randrange(keys)
        key = f"k{k}".encode()
        t = base + i * step_ms + rng.randrange(-400, 400)
        if rng.random() < 0.03:
            t -= 4_000
        roll = rng.random()
        if roll < 0.002:
            value = b"{not json " + str(i).encode()
        else:
            v = -1 if roll < 0.005 else i % 5000
            value = orjson.dumps({"id": i, "t": t, "n": v, "kind": "w" if rng.random() < 0.6 else "p"})
        out.append((k % partitions, key, value))
    return out


class Feeder(threading.Thread):
    """Produces `records` at about `rate` per second with an idempotent producer (acks=all), riding out
    broker failures; `produced` counts records handed to the producer, `errors` any delivery failure.

    It produces only up to the share `release(fraction)` allowed so far (all of it by default), so a
    test can time its faults against input that is still flowing."""

    def __init__(self, bootstrap: str, topic: str, records: list[Record], rate: float) -> None:
        super().__init__(daemon=True, name="feeder")
        self.topic, self.records, self.rate = topic, records, rate
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 600_000,
            }
        )
        self.produced = 0
        self.errors: list[str] = []
        self.done = threading.Event()
        self._allowed = len(records)
        self._gate = threading.Condition()

    def release(self, fraction: float) -> None:
        """Allow the feeder to go on up to `fraction` of the records."""
        with self._gate:
            self._allowed = round(len(self.records) * fraction)
            self._gate.notify_all()

    def _wait_allowed(self, index: int) -> None:
        with self._gate:
            while index >= self._allowed:
                self.producer.poll(0)
                self._gate.wait(0.1)

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.errors.append(str(err))

    def run(self) -> None:
        started = time.monotonic()
        try:
            for i, (partition, key, value) in enumerate(self.records):
                if i >= self._allowed:
                    self._wait_allowed(i)
                    started = time.monotonic() - i / self.rate  # the rate holds from the release on
                while True:
                    try:
                        self.producer.produce(
                            self.topic, value, key, partition=partition, on_delivery=self._delivered
                        )
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                self.produced = i + 1
                # The pacing itself, serving delivery reports meanwhile (poll returns early on events).
                while (ahead := self.produced / self.rate - (time.monotonic() - started)) > 0:
                    self.producer.poll(ahead)
            left = self.producer.flush(600)
            if left:
                self.errors.append(f"{left} records never delivered")
        except Exception as exc:  # surfaced by the test through `errors`
            self.errors.append(repr(exc))
        finally:
            self.done.set()

    def fraction(self) -> float:
        return self.produced / len(self.records)


@dataclass
class Outcome:
    """What a run produced (or must produce): plain outputs, window results, DLQ entries."""

    outputs: Counter[tuple[str, int, int, str]] = field(default_factory=Counter)
    windows: Counter[tuple[str, int, int, int]] = field(default_factory=Counter)
    dlq: Counter[tuple[int, int, str]] = field(default_factory=Counter)

    def diff(self, other: Outcome) -> str:
        parts = []
        for name in ("outputs", "windows", "dlq"):
            got, want = getattr(self, name), getattr(other, name)
            extra, missing = got - want, want - got
            if extra or missing:
                parts.append(
                    f"{name}: {sum(extra.values())} duplicate/unexpected (e.g. {sorted(extra)[:3]}), "
                    f"{sum(missing.values())} missing (e.g. {sorted(missing)[:3]})"
                )
        return "; ".join(parts) or "equal"


def oracle(messages: list[Message]) -> Outcome:
    """The expected outcome of the topology over `messages` (the input topic, in offset order)."""
    expected = Outcome()
    windowed: dict[int, list[Rec]] = {}
    offsets: dict[int, tuple[int, int]] = {}  # record id -> (partition, offset)
    for msg in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        partition, offset, key = msg.partition(), msg.offset(), (msg.key() or b"").decode()
        try:
            value = orjson.loads(msg.value() or b"")
        except orjson.JSONDecodeError:
            expected.dlq[(partition, offset, "decode")] += 1
            continue
        if not 0 <= value["n"] <= 1_000_000:
            expected.dlq[(partition, offset, "validate")] += 1
        elif value["kind"] == "w":
            windowed.setdefault(partition, []).append(Rec(value["id"], key, value["t"], 1.0))
            offsets[value["id"]] = (partition, offset)
        else:
            i = value["id"]
            expected.outputs[(key, i, value["n"] * value["n"], f"k{i % 97}")] += 1
    result = fixed(windowed, Tumbling(SIZE_MS, grace_ms=GRACE_MS), len, lateness=0)
    expected.windows.update((str(k), start, end, n) for (k, start, end), n in result.closed.items())
    expected.dlq.update((*offsets[i], "late") for i in result.late)
    return expected


def observed(bootstrap: str, output: str, windows: str, dlq: str) -> Outcome:
    """The committed (read_committed) outcome in the three output topics."""
    got = Outcome()
    for m in read_all(bootstrap, output):
        v = orjson.loads(m.value())
        got.outputs[((m.key() or b"").decode(), v["id"], v["sq"], v["tag"])] += 1
    for m in read_all(bootstrap, windows):
        v = orjson.loads(m.value())
        got.windows[((m.key() or b"").decode(), v["start"], v["end"], v["value"])] += 1
    for m in read_all(bootstrap, dlq):
        h = dlq_headers(m.headers())
        got.dlq[(int(h["dlq.source.partition"]), int(h["dlq.source.offset"]), h["dlq.stage"])] += 1
    return got
