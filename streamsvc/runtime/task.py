"""The contract between `TaskManager` and an agent's work: the `Task` interface, the `Rewind` a failed
commit returns, and `RetryBatch` for records found bad only once folded or sent."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, Message
from confluent_kafka.admin import AdminClient

from streamsvc.errors import StreamsvcError
from streamsvc.observability.recorder import Outcome
from streamsvc.runtime.timesync import TimeSync

TP = tuple[str, int]


class RetryBatch(StreamsvcError):
    """Records that fail only once folded or sent were found; the task has noted them for the
    dead-letter topic. Abort, rewind and process the input again."""


class StaleAssignment(StreamsvcError):
    """The group coordinator keeps handing out an assignment that does not match the subscription."""


@dataclass(frozen=True)
class Rewind:
    """A commit that did not happen. Rewind to `to` where given (authoritative positions, e.g. what an
    Iceberg table holds after a fence), else to the last commit. `progress`: the failure named its
    culprits (they go to the DLQ on the re-run), so it does not count towards the livelock guard."""

    reason: str
    to: Mapping[TP, int] = field(default_factory=dict)
    progress: bool = False


class Task(ABC):
    """What an agent does with its partitions; `TaskManager` decides when."""

    name: str
    default_start: int = OFFSET_INVALID
    """Where a partition without a committed position starts (OFFSET_INVALID: `auto.offset.reset`)."""
    lag_total: Callable[[int], None] | None = None
    """Also told the total consumer lag (the Iceberg sink exports it as its table's offset lag)."""
    growing_sources: frozenset[str] = frozenset()
    """Source topics the task itself writes (repartition topics): caught up means their current end."""
    time_sync: TimeSync | None = None
    """Co-partitioned inputs merged by timestamp (see `runtime.timesync`); None: arrival order."""

    @abstractmethod
    def consumer_config(self) -> dict[str, Any]:
        """librdkafka settings of the agent's consumer (the manager adds its callbacks)."""

    @abstractmethod
    def subscription(self) -> list[str]:
        """The topics to subscribe to."""

    def open(self, consumer: Consumer, admin: AdminClient) -> None:
        """Create producers and check topics (`admin`: on the bootstrap servers, already reached);
        runs before the subscription."""
        return None

    @abstractmethod
    def start_positions(self, consumer: Consumer, partitions: list[TP]) -> dict[TP, int]:
        """Committed positions of newly assigned partitions (absent: nothing committed)."""

    def restore(self, partitions: set[TP], committed: Mapping[TP, int]) -> None:
        """Make the state of `partitions` what it was at their committed positions."""
        return None

    @abstractmethod
    def process(self, records: list[Message]) -> None:
        """Process and buffer one batch; raise `RetryBatch` to re-run it from the last commit."""

    def before_poll(self) -> None:
        """Work at the start of every loop turn (e.g. follow replicated tables)."""
        return None

    def tick(self, now: float) -> None:
        """Work at the end of every loop turn (idle partitions, periodic merges)."""
        return None

    @property
    @abstractmethod
    def pending(self) -> bool:
        """Whether anything is buffered or open since the last commit."""

    @abstractmethod
    def commit_due(self, now: float, idle: bool) -> bool:
        """Whether to commit now (`idle`: the last poll returned nothing)."""

    @abstractmethod
    def commit(self, positions: dict[TP, int], committed: Mapping[TP, int]) -> Rewind | None:
        """Commit what is buffered with `positions` (next offsets processed since the last commit;
        `committed`: the last commit's); None when committed."""

    @abstractmethod
    def outcome(self) -> Outcome:
        """The record counts of what the last successful `commit` committed (for the metrics)."""

    @abstractmethod
    def abort(self) -> None:
        """Discard what is buffered and abort the open transaction (idempotent)."""

    def drop(self, partitions: set[TP]) -> None:
        """Forget the state of partitions that moved away."""
        return None

    def finish(self) -> None:
        """Last work before a `--until-caught-up` run ends (after its final commit)."""
        return None

    def close(self) -> None:
        """Release clients; must not raise."""
        return None
