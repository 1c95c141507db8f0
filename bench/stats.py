"""Pure helpers of `bench/run`: the offline Q5-lite result, the correctness gate, and the statistics.

No Kafka, no clocks: everything here is a function of its arguments, so tests/bench/ checks it directly.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SIZE, ADVANCE, GRACE = 10_000, 2_000, 1_000

Window = tuple[str, int]  # (auction key, window start ms)


@dataclass(frozen=True)
class Oracle:
    """Final hopping-window counts, as an engine with per-partition watermarks (max event time seen so
    far in the partition) and 1 s grace computes them; records later than the grace are dropped."""

    counts: dict[Window, int]  # every window that received a record (closed or not)
    closes_in: dict[Window, int]  # window -> the partition whose watermark closes it
    final_wm: dict[int, int]  # partition -> its final watermark

    def closed(self, window: Window) -> bool:
        return window[1] + SIZE + GRACE <= self.final_wm[self.closes_in[window]]

    def required(self, window: Window) -> bool:
        """Closed even by the slowest partition's watermark, and not just by reaching it: engines with
        one watermark for all partitions (Flink) and per-partition engines (Kafka Streams, streamsvc,
        Quix) must all emit it. (Engines differ on whether a window closes when the watermark reaches
        end + grace or only once it passes it; both are allowed at the very end of the input.)"""
        return window[1] + SIZE + GRACE < min(self.final_wm.values())

    @property
    def n_closed(self) -> int:
        return sum(1 for w in self.counts if self.closed(w))

    @property
    def n_required(self) -> int:
        return sum(1 for w in self.counts if self.required(w))


def oracle(per_partition: Mapping[int, Sequence[tuple[int, int]]]) -> Oracle:
    """`per_partition`: partition -> [(auction, event time ms)] in append order."""
    counts: dict[Window, int] = {}
    closes_in: dict[Window, int] = {}
    final_wm: dict[int, int] = {}
    for part, recs in per_partition.items():
        wm = -(2**62)
        for auction, ts in recs:
            wm = max(wm, ts)
            first = (ts - SIZE) // ADVANCE * ADVANCE + ADVANCE
            for start in range(first, ts + 1, ADVANCE):
                if start + SIZE + GRACE > wm:
                    w = (str(auction), start)
                    counts[w] = counts.get(w, 0) + 1
                    closes_in[w] = part
        final_wm[part] = wm
    return Oracle(counts, closes_in, final_wm)


def closed_by_wall_clock(expected: Oracle) -> Oracle:
    """The same counts with every window closed: for an engine that closes windows on wall-clock time
    (faust), fed bids stamped with the time they were produced, the clock passes every window's end +
    grace once the input ends, so every window that received a record must be emitted, once."""
    last = max(expected.final_wm.values(), default=0)
    return Oracle(
        expected.counts, expected.closes_in, {p: last + SIZE + GRACE + 1 for p in expected.final_wm}
    )


@dataclass(frozen=True)
class Verdict:
    ok: bool
    emitted: int
    text: str


def gate(expected: Oracle, got: Iterable[tuple[str, int, int, int]]) -> Verdict:
    """Compare an engine's emitted (key, start, end, count) with the oracle.

    Correct means: each window emitted once, with the oracle's count, only once it is closed; every
    window closed by the slowest partition's watermark is present. Windows closed by their own
    partition's watermark but not by the slowest one may be absent (watermark propagation differs).
    """
    seen: Counter[Window] = Counter()
    wrong_count, early, bad_end = [], [], []
    for key, start, end, value in got:
        w = (key, start)
        seen[w] += 1
        if end != start + SIZE:
            bad_end.append(w)
        elif w not in expected.counts or expected.counts[w] != value:
            wrong_count.append((w, value, expected.counts.get(w)))
        elif not expected.closed(w):
            early.append(w)
    dupes = [w for w, n in seen.items() if n > 1]
    missing = [w for w in expected.counts if expected.required(w) and w not in seen]
    emitted = sum(seen.values())
    problems = []
    if wrong_count:
        problems.append(f"{len(wrong_count)} wrong counts (e.g. {sorted(wrong_count)[:2]})")
    if dupes:
        problems.append(f"{len(dupes)} windows emitted more than once (e.g. {sorted(dupes)[:2]})")
    if missing:
        problems.append(
            f"{len(missing)} of {expected.n_required} closed windows missing (e.g. {sorted(missing)[:2]})"
        )
    if early:
        problems.append(f"{len(early)} windows emitted before they closed")
    if bad_end:
        problems.append(f"{len(bad_end)} windows with a wrong end")
    if problems:
        return Verdict(False, emitted, "WRONG: " + "; ".join(problems))
    return Verdict(True, emitted, f"equal ({emitted:,} window counts)")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Spread:
    median: float
    lo: float
    hi: float

    def fmt(self, spec: str = ",.0f") -> str:
        if math.isnan(self.median):
            return "-"
        if len({self.lo, self.hi}) == 1:
            return format(self.median, spec)
        return f"{format(self.median, spec)} ({format(self.lo, spec)}-{format(self.hi, spec)})"


def spread(values: Sequence[float]) -> Spread:
    """Median with min-max over repetitions (NaNs, i.e. not measured, are left out)."""
    vals = sorted(v for v in values if not math.isnan(v))
    if not vals:
        return Spread(math.nan, math.nan, math.nan)
    n = len(vals)
    median = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    return Spread(median, vals[0], vals[-1])


def interpolate(samples: Sequence[tuple[float, float]], t: float) -> float:
    """Linear interpolation of a monotone (time, value) series at `t`, clamped to its ends."""
    if not samples:
        return math.nan
    if t <= samples[0][0]:
        return samples[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return samples[-1][1]


def rotation(engines: Sequence[str], rep: int) -> list[str]:
    """The engine order of repetition `rep`: each repetition starts one engine later."""
    k = rep % len(engines) if engines else 0
    return [*engines[k:], *engines[:k]]


def closing_times(per_partition: Mapping[int, Sequence[tuple[int, int, float]]]) -> dict[Window, float]:
    """Window -> wall time its closing record was appended.

    `per_partition`: partition -> [(auction, event time ms, append wall time s)] in append order. A
    window's closing record is the first record of its partition that moves the partition's watermark
    (max event time) to end + grace or beyond.
    """
    out: dict[Window, float] = {}
    for recs in per_partition.values():
        marks: list[tuple[int, float]] = []  # (watermark, wall time) each time the watermark moves
        wm = -(2**62)
        keys: dict[Window, None] = {}
        for auction, ts, wall in recs:
            if ts > wm:
                wm = ts
                marks.append((wm, wall))
            first = (ts - SIZE) // ADVANCE * ADVANCE + ADVANCE
            for start in range(first, ts + 1, ADVANCE):
                keys[(str(auction), start)] = None
        wms = [m for m, _ in marks]
        for w in keys:
            i = bisect.bisect_left(wms, w[1] + SIZE + GRACE)
            if i < len(marks):
                out[w] = marks[i][1]
    return out
