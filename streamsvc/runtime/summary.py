"""The outcome summary of a run: per source topic consumed, emitted, filtered, dead-lettered by reason and
late, and whether `consumed = emitted + filtered + dead-lettered + late` holds.

`streamsvc run --until-caught-up` prints it at the end; a demo or a script can print the same lines:

    worker = Worker([topology], settings, until_caught_up=True)
    worker.run()
    print(format_summary(worker.agents))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from streamsvc.runtime.compiled import Tally


class HasTotals(Protocol):
    """An agent: its name and its committed outcome counts."""

    @property
    def name(self) -> str: ...

    @property
    def totals(self) -> Tally: ...


@dataclass(frozen=True)
class SourceOutcome:
    """What happened to the records of one source topic (counts committed so far)."""

    topic: str
    consumed: int
    emitted: int
    filtered: int
    late: int
    dead_by_stage: dict[str, int] = field(default_factory=dict)
    dead_by_reason: dict[tuple[str, str], int] = field(default_factory=dict)  # (stage, error class)

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_by_stage.values())

    @property
    def balanced(self) -> bool:
        return self.consumed == self.emitted + self.filtered + self.dead_lettered + self.late


def outcomes(totals: Tally) -> list[SourceOutcome]:
    """One `SourceOutcome` per source topic of `totals`, sorted by topic."""
    topics = set(totals.consumed) | set(totals.emitted) | set(totals.filtered) | set(totals.late)
    topics |= {topic for topic, _ in totals.dead_lettered}
    result = []
    for topic in sorted(topics):
        by_stage: Counter[str] = Counter()
        for (t, stage), n in totals.dead_lettered.items():
            if t == topic and n:
                by_stage[stage] += n
        by_reason: dict[tuple[str, str], int] = {
            (stage, cls): n for (t, stage, cls), n in sorted(totals.error_classes.items()) if t == topic and n
        }
        result.append(
            SourceOutcome(
                topic,
                totals.consumed[topic],
                totals.emitted[topic],
                totals.filtered[topic],
                totals.late[topic],
                dict(sorted(by_stage.items())),
                by_reason,
            )
        )
    return result


def _dead_text(outcome: SourceOutcome) -> str:
    if not outcome.dead_lettered:
        return "0"
    parts = []
    for stage, n in outcome.dead_by_stage.items():
        # the class without its module (`streamsvc.errors.ExpectationFailed` -> `ExpectationFailed`)
        classes = [
            f"{cls.rsplit('.', 1)[-1]} {m}" for (s, cls), m in outcome.dead_by_reason.items() if s == stage
        ]
        parts.append(f"{stage} {n}" + (f": {', '.join(classes)}" if classes else ""))
    return f"{outcome.dead_lettered} ({'; '.join(parts)})"


def format_outcome(outcome: SourceOutcome) -> str:
    """`  <topic>: consumed N, emitted N, filtered N, dead-lettered N (stage N: Class N), late N`."""
    return (
        f"  {outcome.topic}: consumed {outcome.consumed}, emitted {outcome.emitted}, "
        f"filtered {outcome.filtered}, dead-lettered {_dead_text(outcome)}, late {outcome.late}"
    )


def format_summary(agents: Iterable[HasTotals]) -> str:
    """The outcome summary of `agents` (one block per agent, then the invariant), as printed text."""
    lines = []
    balanced = True
    for agent in agents:
        rows = outcomes(agent.totals)
        lines.append(f"{agent.name}: {len(rows)} source topic{'s' if len(rows) != 1 else ''}")
        lines.extend(format_outcome(row) for row in rows)
        balanced = balanced and all(row.balanced for row in rows)
    verdict = "holds" if balanced else "BROKEN"
    lines.append(f"invariant consumed = emitted + filtered + dead-lettered + late: {verdict}")
    return "\n".join(lines)
