"""Where agents keep errors that surface inside librdkafka callbacks.

Client error callbacks and rebalance callbacks run inside `consume()`; raising there would unwind
through librdkafka. They latch the error instead, and the poll loop raises it right after `consume()`
returns, as `FatalRuntimeError` (the process exits non-zero and the orchestrator restarts it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message

from streamsvc.eos.transactions import is_fatal
from streamsvc.errors import FatalRuntimeError


class FatalLatch:
    log: Any
    _fatal: BaseException | None = None

    def _on_client_error(self, err: KafkaError) -> None:
        if is_fatal(err):
            self._fatal = FatalRuntimeError(f"fatal Kafka client error: {err}")
        else:
            self.log.warning("kafka_client_error", error=str(err))

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # surfaced after consume() returns, not inside librdkafka
            self._fatal = exc

    def _is_record(self, msg: Message) -> bool:
        """False for a consumer event (logged) instead of a record; raises on a fatal consumer error."""
        err = msg.error()
        if err is None:
            return True
        if is_fatal(err):
            raise FatalRuntimeError(f"fatal consumer error: {err}")
        if err.code() != KafkaError._PARTITION_EOF:
            self.log.warning("consume_error", error=str(err))
        return False

    def _raise_if_fatal(self) -> None:
        fatal = self._fatal
        if fatal is None:
            return
        if isinstance(fatal, FatalRuntimeError):
            raise fatal
        raise FatalRuntimeError(f"{type(fatal).__name__}: {fatal}") from fatal
