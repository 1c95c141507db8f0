"""What the broker will accept, checked before producing, and what an earlier attempt found it refuses.

`TopicLimits` holds the limits a broker enforces per record (the smaller of the topic's
`max.message.bytes` and the producer's `message.max.bytes`; the timestamp window of
`message.timestamp.before/after.max.ms` under CreateTime). An output outside them is a record-level
failure: its source record goes to the dead-letter topic at once instead of aborting every transaction
that carries it. What slips through (a refusal only the broker knows) comes back in the delivery
reports; `Quarantine` remembers it so that the re-run of the same input routes the culprit to the DLQ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from streamsvc.dlq.records import SourceMessage, Stage
from streamsvc.eos.delivery import Rejected
from streamsvc.errors import StreamsvcError

RECORD_OVERHEAD = 512  # record and batch framing around key, value and headers
DEFAULT_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes
UNBOUNDED = 2**62
TP = tuple[str, int]


class RecordRejected(StreamsvcError):
    """An output the broker would refuse or did refuse (too large, timestamp out of range, ...)."""


@dataclass(frozen=True)
class TopicLimits:
    max_bytes: int = DEFAULT_MAX_BYTES - RECORD_OVERHEAD
    future_ms: int = UNBOUNDED  # refused when more than this ahead of the broker's clock
    past_ms: int = UNBOUNDED  # refused when more than this behind it

    def check(self, key: bytes | None, value: bytes | None, timestamp_ms: int, now_ms: int) -> None:
        """Raise `RecordRejected` for a record the broker would refuse (timestamp 0: "now")."""
        size = (len(key) if key else 0) + (len(value) if value else 0)
        if size > self.max_bytes:
            raise RecordRejected(f"record of {size} bytes exceeds the {self.max_bytes}-byte limit")
        if timestamp_ms and not now_ms - self.past_ms <= timestamp_ms <= now_ms + self.future_ms:
            raise RecordRejected(
                f"timestamp {timestamp_ms} is outside the broker's accepted range around {now_ms}"
            )


def producer_max_bytes(producer_conf: Mapping[str, Any]) -> int:
    return int(producer_conf.get("message.max.bytes", DEFAULT_MAX_BYTES))


def fetch_limits(
    admin: AdminClient, topics: Iterable[str], producer_conf: Mapping[str, Any]
) -> dict[str, TopicLimits]:
    """Limits of existing `topics` from their configuration (topics not found get the defaults)."""
    client_max = producer_max_bytes(producer_conf)
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in sorted(set(topics))]
    limits: dict[str, TopicLimits] = {}
    if not resources:
        return limits
    for res, fut in admin.describe_configs(resources, request_timeout=30).items():
        try:
            conf = {k: v.value for k, v in fut.result(timeout=30).items()}
        except KafkaException:
            continue
        topic_max = int(conf.get("max.message.bytes") or client_max)
        create_time = conf.get("message.timestamp.type", "CreateTime") == "CreateTime"
        after = conf.get("message.timestamp.after.max.ms")
        before = conf.get("message.timestamp.before.max.ms")
        limits[res.name] = TopicLimits(
            max_bytes=min(topic_max, client_max) - RECORD_OVERHEAD,
            # Keep a minute's margin for clock skew between this host and the broker.
            future_ms=int(after) - 60_000 if create_time and after else UNBOUNDED,
            past_ms=int(before) - 60_000 if create_time and before else UNBOUNDED,
        )
    return limits


@dataclass
class Quarantine:
    """Records and outputs an earlier attempt of the current input found to fail.

    `poisoned`: source record (topic, partition, offset) -> (stage, error), dead-lettered directly on
    the re-run. `blocked`: output (topic, key, value) -> the broker's refusal; the record that produces
    it again goes to the DLQ. Entries are released once the input past them is committed.
    """

    poisoned: dict[tuple[str, int, int], tuple[Stage, BaseException]] = field(default_factory=dict)
    blocked: dict[tuple[str, bytes | None, bytes | None], str] = field(default_factory=dict)

    def poison(self, msg: SourceMessage, stage: Stage, exc: BaseException) -> None:
        self.poisoned[(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)] = (stage, exc)

    def block(self, rejected: Iterable[Rejected]) -> int:
        n = 0
        for r in rejected:
            self.blocked[(r.topic, r.key, r.value)] = r.error
            n += 1
        return n

    def release(self, committed: Mapping[TP, int]) -> None:
        self.poisoned = {k: v for k, v in self.poisoned.items() if k[2] >= committed.get((k[0], k[1]), -1)}
        self.blocked.clear()  # the re-run that routed them to the DLQ has committed
