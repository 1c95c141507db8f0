"""Kafka client errors, classified in one place (BRIEF §3.1).

- fatal: this client must not go on (fenced producer or static member, invalid epoch). The process
  exits 2 and the orchestrator restarts it; the new instance owns the transactional id.
- abortable: the open transaction is lost; abort it, rewind the input to the last commit, go on.
- retriable: the call may succeed if made again; librdkafka keeps a timed-out transactional call as
  its current operation, so the *same* call is repeated (any other one answers `_CONFLICT`).
- record: the broker or the client rejected one record (too large, invalid, bad timestamp); that
  record goes to the dead-letter topic and the rest of the batch commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

from streamsvc.errors import StreamsvcError


class ErrorKind(StrEnum):
    FATAL = "fatal"
    ABORTABLE = "abortable"
    RETRIABLE = "retriable"
    RECORD = "record"


_FATAL_CODES = frozenset(
    {
        KafkaError._FATAL,
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError.TRANSACTION_COORDINATOR_FENCED,
    }
)
RECORD_CODES = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
    }
)


# The group or transaction coordinator is elsewhere or still loading its partition (right after a
# broker start or a leader move). librdkafka reports COORDINATOR_LOAD_IN_PROGRESS as not retriable
# from the admin API, yet the very same call succeeds a moment later.
COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
T = TypeVar("T")


class AbortableError(StreamsvcError):
    """The open transaction cannot commit: abort it and rewind the input to the last commit."""


class DeadlineExceeded(StreamsvcError):
    """A client call did not return within our own deadline: the agent is stuck and must exit
    (non-zero) so that the orchestrator restarts it."""


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The `KafkaError` carried by a `KafkaException` (None for anything else)."""
    if not isinstance(exc, KafkaException):
        return None
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def is_fatal(err: KafkaError | None) -> bool:
    return err is not None and (err.fatal() or err.code() in _FATAL_CODES)


def classify(err: KafkaError | None) -> ErrorKind:
    """The kind of a client error; unknown, non-retriable errors count as abortable (never commit
    through an error nobody understood)."""
    if err is None:
        return ErrorKind.ABORTABLE
    if is_fatal(err):
        return ErrorKind.FATAL
    if err.code() in RECORD_CODES:
        return ErrorKind.RECORD
    if err.txn_requires_abort():
        return ErrorKind.ABORTABLE
    if err.retriable():
        return ErrorKind.RETRIABLE
    return ErrorKind.ABORTABLE


def while_coordinator_moves(call: Callable[[], T], timeout: float = 60.0, interval: float = 0.2) -> T:
    """`call()`, made again while its answer is a coordinator that is moving or loading (up to
    `timeout` seconds); any other error, or the last one past the deadline, is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.code() not in COORDINATOR_MOVING or time.monotonic() > deadline:
                raise
        time.sleep(interval)
