"""Blocking client calls with a deadline of our own.

Some librdkafka calls can block far past the timeout they are given (`send_offsets_to_transaction`
while the group coordinator is unreachable has been seen hanging for minutes). Each blocking call
therefore runs on one daemon helper thread and the caller waits at most `timeout_s`; past that the
call is abandoned and `DeadlineExceeded` is raised, so the agent can report itself not ready and exit
non-zero instead of hanging. A daemon thread never holds up the process exit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from streamsvc.eos.errors import DeadlineExceeded

T = TypeVar("T")


class GuardedCalls:
    """Runs calls one at a time on a daemon thread; `call` waits for each with a deadline."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stuck: str | None = None  # the call that overran its deadline, if any
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=f"client-calls-{name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the waiting caller
                fut.set_exception(exc)

    def call(self, fn: Callable[[], T], timeout_s: float, what: str) -> T:
        """`fn()` on the helper thread; its result, or its exception re-raised here."""
        if self.stuck is not None:
            raise DeadlineExceeded(f"{what}: an earlier call ({self.stuck}) is still blocked")
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        try:
            return fut.result(timeout=timeout_s)
        except FutureTimeout:
            self.stuck = what
            raise DeadlineExceeded(f"{what} did not return within {timeout_s:.0f} s") from None

    def close(self) -> None:
        self._jobs.put(None)
