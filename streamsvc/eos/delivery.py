"""Delivery reports: which produced records the broker (or the client) refused, and why.

Both commit protocols flush before committing and look here: a record-level refusal (too large,
invalid, bad timestamp; see `eos.errors.RECORD_CODES`) names the output so that the batch can be re-run
with its source record routed to the dead-letter topic; any other delivery failure only aborts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError

from streamsvc.eos.errors import RECORD_CODES


@dataclass(frozen=True, slots=True)
class Rejected:
    """An output the broker refused for what it is (not for where or when it was sent)."""

    topic: str
    key: bytes | None
    value: bytes | None
    error: str


class DeliveryReports:
    """The producer's `on_delivery` callback target; callbacks may run on any thread."""

    def __init__(self, track_offsets: bool = False) -> None:
        # Re-entrant: librdkafka can serve delivery callbacks on this thread while one runs (a producer
        # destroyed by the garbage collector mid-callback purges its queue through this callback).
        self._lock = threading.RLock()
        self._rejected: list[Rejected] = []
        self._failed: list[str] = []
        self.track_offsets = track_offsets
        self.first_offsets: dict[tuple[str, int], int] = {}  # with `track_offsets`: per topic partition
        self.watched: frozenset[str] = frozenset()
        self.last_offsets: dict[tuple[str, int], int] = {}  # of `watched` topics; the caller clears it

    def on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            if self.watched and msg.topic() in self.watched:
                tp = (msg.topic() or "", msg.partition() or 0)
                with self._lock:
                    self.last_offsets[tp] = max(self.last_offsets.get(tp, -1), msg.offset())
            if self.track_offsets:
                tp = (msg.topic() or "", msg.partition() or 0)
                with self._lock:
                    self.first_offsets[tp] = min(self.first_offsets.get(tp, msg.offset()), msg.offset())
            return
        with self._lock:
            if err.code() in RECORD_CODES:
                self._rejected.append(Rejected(msg.topic() or "", msg.key(), msg.value(), str(err)))
            elif err.code() not in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
                self._failed.append(f"{msg.topic()}: {err}")

    def take_last_offsets(self) -> dict[tuple[str, int], int]:
        """The last delivered offset per partition of the `watched` topics since the last call."""
        with self._lock:
            last, self.last_offsets = self.last_offsets, {}
        return last

    def take(self) -> tuple[list[Rejected], list[str]]:
        """(record-level refusals, other failures) since the last call; also forgets `first_offsets`."""
        with self._lock:
            rejected, failed = self._rejected, self._failed
            self._rejected, self._failed = [], []
            self.first_offsets = {}
        return rejected, failed
