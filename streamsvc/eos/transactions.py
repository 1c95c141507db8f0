"""Commit protocols: Kafka transactions (EOS v2, KIP-447) and plain at-least-once.

Both expose the same calls: `init()`, `begin()` before producing, `commit(offsets)` and `abort()`.
`commit` flushes first; a record the broker refused comes back in `CommitResult.rejected` with the
transaction aborted, so the agent can re-run the batch with that record dead-lettered. Errors are
handled by kind (`eos.errors`): fatal -> `FatalRuntimeError` (exit 2); retriable -> the same call again
(a timed-out `commit_transaction` is resumed by calling it again); abortable -> abort, and the agent
rewinds. Every blocking call runs under a deadline of our own (`eos.calls`): past it `DeadlineExceeded`
tells the agent it is stuck.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from streamsvc.eos.calls import GuardedCalls
from streamsvc.eos.delivery import DeliveryReports, Rejected
from streamsvc.eos.errors import (
    AbortableError,
    DeadlineExceeded,
    ErrorKind,
    classify,
    kafka_error,
)
from streamsvc.errors import FatalRuntimeError, StreamsvcError
from streamsvc.faults import FaultHook, no_faults

T = TypeVar("T")
CALL_GRACE_S = 5.0  # beyond a call's own timeout before we stop waiting for it


class TransactionStateError(StreamsvcError):
    """A transaction could not even be aborted: the agent exits and the next instance cleans up."""


@dataclass(frozen=True)
class CommitResult:
    """`committed`; otherwise everything since the last commit was discarded and the agent must rewind.
    `rejected`: outputs the broker refused (their source records go to the DLQ on the re-run)."""

    committed: bool
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True)
class ClientTimeouts:
    """`call_s`: one attempt of a blocking call; `deadline_s`: all attempts of one operation."""

    call_s: float = 10.0
    deadline_s: float = 120.0


class Committer(Protocol):
    in_transaction: bool
    reports: DeliveryReports

    def init(self) -> None: ...
    def begin(self) -> None: ...
    def commit(self, offsets: list[TopicPartition]) -> CommitResult: ...
    def abort(self) -> None: ...


def _raise_classified(exc: KafkaException, what: str) -> None:
    kind = classify(kafka_error(exc))
    if kind is ErrorKind.FATAL:
        raise FatalRuntimeError(f"{what} failed fatally: {kafka_error(exc)}") from exc
    raise AbortableError(f"{what}: {kafka_error(exc)}") from exc


class ResumableCalls:
    """Blocking calls under `ClientTimeouts`, with retriable errors retried by calling again."""

    def __init__(self, calls: GuardedCalls, timeouts: ClientTimeouts, log: Any) -> None:
        self.calls, self.timeouts, self.log = calls, timeouts, log

    def deadline(self) -> float:
        return time.monotonic() + self.timeouts.deadline_s

    def resumable(self, fn: Callable[[float], T], what: str, deadline: float) -> T:
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(f"{what}: no success within {self.timeouts.deadline_s:.0f} s")
            timeout = min(self.timeouts.call_s, remaining)
            try:
                return self.calls.call(lambda t=timeout: fn(t), timeout + CALL_GRACE_S, what)  # type: ignore[misc]
            except KafkaException as exc:
                if classify(kafka_error(exc)) is not ErrorKind.RETRIABLE:
                    _raise_classified(exc, what)
                attempt += 1
                self.log.warning("client_call_retry", call=what, attempt=attempt, error=str(kafka_error(exc)))
                time.sleep(min(0.1 * attempt, 1.0))

    def flush(self, producer: Producer, deadline: float) -> None:
        """Until every produced record has a delivery report."""
        attempt = 0
        while remaining := self.resumable(lambda t: producer.flush(t), "flush", deadline):
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(f"records undelivered after {self.timeouts.deadline_s:.0f} s")
            attempt += 1  # timed out with records in flight: flush again (the same call, resumed)
            self.log.warning("client_call_retry", call="flush", attempt=attempt, undelivered=remaining)


class TransactionalCommitter:
    """Outputs, DLQ records and consumed offsets in one Kafka transaction."""

    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        reports: DeliveryReports,
        log: Any,
        calls: GuardedCalls,
        timeouts: ClientTimeouts | None = None,
        faults: FaultHook = no_faults,
    ) -> None:
        self.producer, self.consumer, self.reports, self.log = producer, consumer, reports, log
        self.faults = faults
        self.guard = ResumableCalls(calls, timeouts or ClientTimeouts(), log)
        self.in_transaction = False

    def init(self) -> None:
        """Register the transactional id; this fences any older producer with the same id and aborts
        its open transaction."""
        self.guard.resumable(
            lambda t: self.producer.init_transactions(t), "init_transactions", self.guard.deadline()
        )

    def begin(self) -> None:
        if self.in_transaction:
            return
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            _raise_classified(exc, "begin_transaction")
        self.in_transaction = True

    def commit(self, offsets: list[TopicPartition]) -> CommitResult:
        if not self.in_transaction:
            return CommitResult(True)
        deadline = self.guard.deadline()
        try:
            self.guard.flush(self.producer, deadline)
            rejected, failed = self.reports.take()
            if rejected or failed:
                self.log.warning(
                    "delivery_failed_aborting", rejected=[r.error for r in rejected][:5], failed=failed[:5]
                )
                self.abort()
                return CommitResult(False, rejected)
            if offsets:
                metadata = self.consumer.consumer_group_metadata()

                def send(timeout: float) -> None:
                    self.faults("before_send_offsets")
                    self.producer.send_offsets_to_transaction(offsets, metadata, timeout)

                self.guard.resumable(send, "send_offsets_to_transaction", deadline)
            try:
                self.faults("after_send_offsets")
            except KafkaException as exc:
                _raise_classified(exc, "after send_offsets_to_transaction")

            def commit(timeout: float) -> None:
                self.faults("before_commit")
                self.producer.commit_transaction(timeout)

            self.guard.resumable(commit, "commit_transaction", deadline)
        except AbortableError as exc:
            self.log.warning("transaction_aborting", error=str(exc))
            self.abort()
            return CommitResult(False, self.reports.take()[0])
        self.in_transaction = False
        return CommitResult(True)

    def abort(self) -> None:
        if not self.in_transaction:
            return
        try:
            self.guard.resumable(
                lambda t: self.producer.abort_transaction(t), "abort_transaction", self.guard.deadline()
            )
        except AbortableError as exc:
            raise TransactionStateError(f"the transaction could not be aborted: {exc}") from exc
        finally:
            self.in_transaction = False
        self.reports.take()  # purged records report errors that say nothing about them


class AtLeastOnceCommitter:
    """Flush the producer, then commit offsets synchronously. Duplicates are possible after a crash."""

    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        reports: DeliveryReports,
        log: Any,
        calls: GuardedCalls,
        timeouts: ClientTimeouts | None = None,
        faults: FaultHook = no_faults,
    ) -> None:
        self.producer, self.consumer, self.reports, self.log = producer, consumer, reports, log
        self.faults = faults
        self.guard = ResumableCalls(calls, timeouts or ClientTimeouts(), log)
        self.in_transaction = False

    def init(self) -> None:
        pass

    def begin(self) -> None:
        self.in_transaction = True

    def commit(self, offsets: list[TopicPartition]) -> CommitResult:
        if not self.in_transaction:
            return CommitResult(True)
        deadline = self.guard.deadline()
        self.guard.flush(self.producer, deadline)
        rejected, failed = self.reports.take()
        if rejected or failed:
            self.log.warning(
                "delivery_failed_rewinding", rejected=[r.error for r in rejected][:5], failed=failed[:5]
            )
            self.abort()
            return CommitResult(False, rejected)
        if offsets:

            def commit(timeout: float) -> None:
                self.faults("before_commit")
                self.consumer.commit(offsets=offsets, asynchronous=False)

            try:
                self.guard.resumable(commit, "commit offsets", deadline)
            except AbortableError as exc:
                self.log.warning("offset_commit_failed", error=str(exc))
                self.abort()
                return CommitResult(False)
        self.in_transaction = False
        return CommitResult(True)

    def abort(self) -> None:
        # Already-sent records cannot be taken back; rewinding re-sends them (at-least-once).
        self.in_transaction = False
