"""Error classification and the coordinator-moving retry (pure unit tests: no broker involved)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamsvc.eos.errors import ErrorKind, classify, while_coordinator_moves


def _raising(codes: list[int], answer: str = "ok"):  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(codes):
            raise KafkaException(KafkaError(codes[len(calls) - 1]))
        return answer

    return call, calls


def test_a_loading_coordinator_is_asked_again_until_it_answers() -> None:
    call, calls = _raising(
        [
            KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
            KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_NOT_AVAILABLE,
        ]
    )
    assert while_coordinator_moves(call, timeout=5, interval=0) == "ok"
    assert len(calls) == 4


def test_other_errors_are_raised_at_once() -> None:
    call, calls = _raising([KafkaError.GROUP_ID_NOT_FOUND])
    with pytest.raises(KafkaException):
        while_coordinator_moves(call, timeout=5, interval=0)
    assert len(calls) == 1


def test_a_coordinator_that_never_loads_raises_after_the_deadline() -> None:
    call, calls = _raising([KafkaError.COORDINATOR_LOAD_IN_PROGRESS] * 1000)
    with pytest.raises(KafkaException) as info:
        while_coordinator_moves(call, timeout=0.05, interval=0.01)
    assert info.value.args[0].code() == KafkaError.COORDINATOR_LOAD_IN_PROGRESS
    assert 1 < len(calls) < 1000


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (KafkaError.PRODUCER_FENCED, ErrorKind.FATAL),
        (KafkaError.MSG_SIZE_TOO_LARGE, ErrorKind.RECORD),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, ErrorKind.ABORTABLE),
    ],
)
def test_classification(code: int, kind: ErrorKind) -> None:
    assert classify(KafkaError(code)) is kind
