"""Fault injection for crash tests: SIGKILL or pause the process at a named point of the commit protocol.

Points: `before_write` (DLQ flushed, nothing written), `after_write` (data files and manifests written,
catalog not yet committed), `after_commit` (catalog committed, in-memory state not yet updated); for the
silver merge, `merge_after_delete` (copy-on-write delete staged), `merge_before_commit` (rewritten and new
data files written, silver not committed), `merge_after_commit`; for compaction, `compact_after_write`
(new files written, nothing committed) and `compact_after_commit`.
Environment (read once per process):

- `STREAMSVC_FAULT_KILL_AT=<point>` and `STREAMSVC_FAULT_KILL_AFTER=<n>`: SIGKILL self on the n-th hit
  (default 1).
- `STREAMSVC_FAULT_PAUSE_AT=<point>` and `STREAMSVC_FAULT_PAUSE_S=<seconds>`: sleep at every hit.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping

POINTS = (
    "before_write",
    "after_write",
    "after_commit",
    "merge_after_delete",
    "merge_before_commit",
    "merge_after_commit",
    "compact_after_write",
    "compact_after_commit",
)

FaultHook = Callable[[str], None]


def no_faults(point: str) -> None:
    """The production hook: does nothing."""


def faults_from_env(env: Mapping[str, str] | None = None) -> FaultHook:
    """A hook configured by `STREAMSVC_FAULT_*`, or `no_faults` when none is set."""
    env = os.environ if env is None else env
    kill_at = env.get("STREAMSVC_FAULT_KILL_AT", "")
    kill_after = int(env.get("STREAMSVC_FAULT_KILL_AFTER", "1") or 1)
    pause_at = env.get("STREAMSVC_FAULT_PAUSE_AT", "")
    pause_s = float(env.get("STREAMSVC_FAULT_PAUSE_S", "0") or 0)
    for point in (kill_at, pause_at):
        if point and point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}; known: {POINTS}")
    if not kill_at and not pause_at:
        return no_faults
    hits: Counter[str] = Counter()

    def hook(point: str) -> None:
        hits[point] += 1
        if point == pause_at and pause_s > 0:
            time.sleep(pause_s)
        if point == kill_at and hits[point] >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook
