"""Fault injection at named points of the agents' loops, for the failure-path tests (BRIEF §3.1).

Production code calls `faults(point)` at each point; the default hook does nothing. A test process
sets `STREAMSVC_FAULTS` to a comma-separated list of `point:kind[:nth[:times]]`: on the `nth` hit of
`point` (default 1), and on the `times - 1` hits after it (default 1 hit in all; `*` = every hit),
do `kind`:

- `kill`: SIGKILL this process (what a node failure or an OOM kill does);
- `raise`: raise `InjectedFault` (an unexpected exception: a bug, a failing dependency);
- `abortable` / `retriable` / `fatal`: raise a `KafkaException` of that class (see `eos.errors`);
- `pause=S`: sleep S seconds (a stalled call).

Points of the stream agent: `before_produce`, `after_produce`, `before_flush_state`,
`after_flush_state`, `before_send_offsets`, `after_send_offsets`, `before_commit`, `after_commit`,
`revoke` (inside the revoke callback). Iceberg sink: `before_dead_letters` (DLQ transaction open,
nothing written), `before_write` (DLQ records flushed), `after_write` (data files written, catalog not
yet committed), `after_catalog_commit` (catalog committed, DLQ transaction not yet), `after_commit`,
`revoke`; silver merge: `merge_after_delete`, `merge_before_commit`, `merge_after_commit`; compaction
(`iceberg maintain --compact`): `compact_after_write` (new files written, not committed),
`compact_after_commit`.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException

from streamsvc.errors import StreamsvcError

STREAM_POINTS = (
    "before_produce",
    "after_produce",
    "before_flush_state",
    "after_flush_state",
    "before_send_offsets",
    "after_send_offsets",
    "before_commit",
    "after_commit",
    "revoke",
)
SINK_POINTS = (
    "before_dead_letters",
    "before_write",
    "after_write",
    "after_catalog_commit",
    "after_commit",
    "revoke",
    "merge_after_delete",
    "merge_before_commit",
    "merge_after_commit",
    "compact_after_write",
    "compact_after_commit",
)
POINTS = tuple(dict.fromkeys(STREAM_POINTS + SINK_POINTS))
KINDS = ("kill", "raise", "abortable", "retriable", "fatal", "pause")
ENV = "STREAMSVC_FAULTS"

FaultHook = Callable[[str], None]


class InjectedFault(StreamsvcError):
    """Raised by a `raise` fault."""


def no_faults(point: str) -> None:
    """The production hook: does nothing."""


@dataclass(frozen=True)
class Fault:
    point: str
    kind: str
    nth: int = 1
    times: int = 1  # 0 = every hit from the nth on
    pause_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        parts = text.strip().split(":")
        if len(parts) < 2 or len(parts) > 4:
            raise ValueError(f"fault {text!r}: expected point:kind[:nth[:times]]")
        point, kind = parts[0], parts[1]
        pause_s = 0.0
        if kind.startswith("pause="):
            kind, pause_s = "pause", float(kind.split("=", 1)[1])
        if point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}; known: {POINTS}")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {KINDS}")
        nth = int(parts[2]) if len(parts) > 2 else 1
        times = 0 if len(parts) > 3 and parts[3] == "*" else int(parts[3]) if len(parts) > 3 else 1
        return cls(point, kind, nth, times, pause_s)

    def due(self, hit: int) -> bool:
        return hit >= self.nth and (self.times == 0 or hit < self.nth + self.times)


def _fire(fault: Fault) -> None:
    where = f"injected {fault.kind} fault at {fault.point}"
    if fault.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault.kind == "pause":
        time.sleep(fault.pause_s)
    elif fault.kind == "raise":
        raise InjectedFault(where)
    elif fault.kind == "abortable":
        raise KafkaException(KafkaError(KafkaError._STATE, where, txn_requires_abort=True))
    elif fault.kind == "retriable":
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, where, retriable=True))
    elif fault.kind == "fatal":
        raise KafkaException(KafkaError(KafkaError._FENCED, where, fatal=True))


def hook_for(faults: list[Fault]) -> FaultHook:
    """A hook that fires `faults`; `no_faults` for an empty list."""
    if not faults:
        return no_faults
    hits: Counter[str] = Counter()
    by_point: dict[str, list[Fault]] = {}
    for fault in faults:
        by_point.setdefault(fault.point, []).append(fault)

    def hook(point: str) -> None:
        todo = by_point.get(point)
        if not todo:
            return
        hits[point] += 1
        for fault in todo:
            if fault.due(hits[point]):
                _fire(fault)

    return hook


def faults_from_env(env: Mapping[str, str] | None = None) -> FaultHook:
    """The hook configured by `STREAMSVC_FAULTS`, or `no_faults` when it is unset."""
    env = os.environ if env is None else env
    spec = env.get(ENV, "").strip()
    return hook_for([Fault.parse(part) for part in spec.split(",") if part.strip()])
