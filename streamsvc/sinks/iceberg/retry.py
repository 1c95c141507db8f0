"""Retrying maintenance commits against a busy table until a deadline, re-planning every attempt.

A sink committing every 0.5 s moves the branch head under any maintenance commit that takes longer to
build than the gap between two sink commits. Each attempt therefore refreshes the table and plans again
(`fn` does both), and a conflict waits an exponential, jittered backoff; the loop ends at the deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException

T = TypeVar("T")


class MaintenanceTimeout(Exception):
    """A maintenance step could not commit before its deadline."""


def backoff(attempt: int) -> float:
    """Seconds to wait after the `attempt`-th conflict: 50 ms doubling to 2 s, with jitter."""
    return float(min(0.05 * 2 ** min(attempt, 10), 2.0) * random.uniform(0.5, 1.0))


def until_deadline(fn: Callable[[], T], deadline: float, what: str) -> tuple[T, int]:
    """Run `fn` (which refreshes and re-plans) until it commits; (its result, attempts).

    A commit whose outcome is unknown is simply re-planned: every step here is idempotent on a refreshed
    table (expire what is still there, merge what is still unmerged)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except (CommitFailedException, CommitStateUnknownException) as exc:
            wait = backoff(attempt)
            if time.monotonic() + wait > deadline:
                raise MaintenanceTimeout(f"{what}: not committed after {attempt} attempts: {exc}") from exc
            time.sleep(wait)
