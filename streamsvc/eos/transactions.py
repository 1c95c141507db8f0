"""Commit protocols: Kafka transactions (EOS v2, KIP-447) and plain at-least-once.

Both expose the same three calls to the agent: `begin()` before producing, `commit(offsets)` that
returns False when the work since the last commit was discarded (the agent must rewind), and
`abort()`. Fatal client states (fenced producer, invalid epoch) raise FatalRuntimeError: the process
must exit non-zero so that the orchestrator restarts it and the new instance fences the old.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streamsvc.errors import FatalRuntimeError

TXN_TIMEOUT_S = 30.0
COMMIT_ATTEMPTS = 5
_FATAL_CODES = frozenset(
    {
        KafkaError._FATAL,
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.FENCED_INSTANCE_ID,
    }
)


def kafka_error(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def is_fatal(err: KafkaError | None) -> bool:
    """Errors after which this client must not go on: fenced producer or static member, invalid epoch."""
    return err is not None and (err.fatal() or err.code() in _FATAL_CODES)


class Committer(Protocol):
    in_transaction: bool

    def begin(self) -> None: ...
    def commit(self, offsets: list[TopicPartition]) -> bool: ...
    def abort(self) -> None: ...


class TransactionalCommitter:
    """Output, DLQ records and consumed offsets in one Kafka transaction."""

    def __init__(self, producer: Producer, consumer: Consumer, log: Any) -> None:
        self.producer = producer
        self.consumer = consumer
        self.log = log
        self.in_transaction = False

    def init(self) -> None:
        """Register the transactional id; this fences any older producer with the same id."""
        self._call(lambda: self.producer.init_transactions(TXN_TIMEOUT_S), "init_transactions")

    def begin(self) -> None:
        if not self.in_transaction:
            self._call(self.producer.begin_transaction, "begin_transaction")
            self.in_transaction = True

    def commit(self, offsets: list[TopicPartition]) -> bool:
        if not self.in_transaction:
            return True
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                if offsets:
                    self.producer.send_offsets_to_transaction(
                        offsets, self.consumer.consumer_group_metadata(), TXN_TIMEOUT_S
                    )
                self.producer.commit_transaction(TXN_TIMEOUT_S)
                self.in_transaction = False
                return True
            except KafkaException as exc:
                err = kafka_error(exc)
                if is_fatal(err):
                    raise FatalRuntimeError(f"transaction commit failed fatally: {err}") from exc
                if (
                    err is not None
                    and err.retriable()
                    and not err.txn_requires_abort()
                    and attempt < COMMIT_ATTEMPTS
                ):
                    self.log.warning("commit_retry", error=str(err), attempt=attempt)
                    time.sleep(0.1 * attempt)
                    continue
                self.log.warning("commit_failed_aborting", error=str(err))
                self.abort()
                return False
        return False  # pragma: no cover - the loop always returns

    def abort(self) -> None:
        if self.in_transaction:
            self._call(lambda: self.producer.abort_transaction(TXN_TIMEOUT_S), "abort_transaction")
            self.in_transaction = False

    def _call(self, fn: Callable[[], None], what: str) -> None:
        try:
            fn()
        except KafkaException as exc:
            err = kafka_error(exc)
            if is_fatal(err):
                raise FatalRuntimeError(f"{what} failed fatally: {err}") from exc
            raise


class AtLeastOnceCommitter:
    """Flush the producer, then commit offsets synchronously. Duplicates are possible after a crash."""

    def __init__(self, producer: Producer, consumer: Consumer, log: Any) -> None:
        self.producer = producer
        self.consumer = consumer
        self.log = log
        self.in_transaction = False
        self.delivery_failed: str | None = None

    def on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.delivery_failed = str(err)

    def init(self) -> None:
        pass

    def begin(self) -> None:
        self.in_transaction = True

    def commit(self, offsets: list[TopicPartition]) -> bool:
        if not self.in_transaction:
            return True
        remaining = self.producer.flush(TXN_TIMEOUT_S)
        if remaining or self.delivery_failed:
            self.log.warning("delivery_failed_rewinding", error=self.delivery_failed, undelivered=remaining)
            self.abort()
            return False
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                err = kafka_error(exc)
                if is_fatal(err):
                    raise FatalRuntimeError(f"offset commit failed fatally: {err}") from exc
                self.log.warning("offset_commit_failed", error=str(err))
                self.abort()
                return False
        self.in_transaction = False
        return True

    def abort(self) -> None:
        # Already-sent records cannot be taken back; rewinding re-sends them (at-least-once).
        self.delivery_failed = None
        self.in_transaction = False
