"""Brute-force offline window semantics: what the window operator must produce, record by record.

These read the definitions in `streamsvc.windows.spec` literally, one record at a time, with no state
purging and no cleverness; the operator's tests and the traffic generator's oracle
(`streamsvc.generate.oracle`) use them as the reference.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamsvc.windows.spec import Hopping, Session, Sliding, Tumbling

NONE = -(2**62)
Win = tuple[Hashable, int, int]
Fold = Callable[[list[Any]], Any]


@dataclass(frozen=True)
class Rec:
    id: int
    key: Hashable
    t: int
    value: float


@dataclass
class Expected:
    windows: dict[Win, Any]  # every window that exists, open or closed, with its value
    closed: dict[Win, Any]  # windows closed by the final watermark (what `final` emits)
    late: set[int]

    def final(self) -> Counter[tuple[Any, ...]]:
        return Counter((*w, v) for w, v in self.closed.items())


def watermarks(recs: Sequence[Rec], lateness: int) -> list[int]:
    out, wm = [], NONE
    for r in recs:
        wm = max(wm, r.t - lateness)
        out.append(wm)
    return out


def fixed(
    parts: dict[int, list[Rec]], spec: Tumbling | Hopping, fold: Fold, lateness: int, flush: int | None = None
) -> Expected:
    size = spec.size_ms
    adv = spec.advance_ms if isinstance(spec, Hopping) else size
    windows: dict[Win, Any] = {}
    closed: dict[Win, Any] = {}
    late: set[int] = set()
    for recs in parts.values():
        contents: dict[Win, list[Any]] = defaultdict(list)
        wms = watermarks(recs, lateness)
        for r, wm in zip(recs, wms, strict=True):
            starts = [
                k * adv
                for k in range((r.t - size) // adv - 1, r.t // adv + 2)
                if k * adv <= r.t < k * adv + size
            ]
            open_ = [s for s in starts if s + size + spec.grace_ms > wm]
            if not open_:
                late.add(r.id)
            for s in open_:
                contents[r.key, s, s + size].append(r.value)
        final_wm = max([NONE, *wms[-1:], *([flush] if flush is not None else [])])
        for w, vals in contents.items():
            windows[w] = fold(vals)
            if w[2] + spec.grace_ms <= final_wm:
                closed[w] = windows[w]
    return Expected(windows, closed, late)


def sliding(
    parts: dict[int, list[Rec]], spec: Sliding, fold: Fold, lateness: int, flush: int | None = None
) -> Expected:
    d, grace = spec.size_ms, spec.grace_ms
    windows: dict[Win, Any] = {}
    closed: dict[Win, Any] = {}
    late: set[int] = set()
    for recs in parts.values():
        wms = watermarks(recs, lateness)
        accepted = []
        for i, r in enumerate(recs):
            if r.t + d + 1 + grace <= wms[i]:
                late.add(r.id)
            else:
                accepted.append(i)
        by_key: dict[Hashable, list[int]] = defaultdict(list)
        for i in accepted:
            by_key[recs[i].key].append(i)
        final_wm = max([NONE, *wms[-1:], *([flush] if flush is not None else [])])
        for key, idx in by_key.items():
            bounds: set[tuple[int, int]] = set()  # inclusive [lo, hi]
            for i in idx:
                t = recs[i].t
                if t + 1 + grace > wms[i]:
                    bounds.add((t - d, t))
                for j in idx:
                    if t + 1 <= recs[j].t <= t + 1 + d and t + d + 2 + grace > wms[max(i, j)]:
                        bounds.add((t + 1, t + 1 + d))
            for lo, hi in bounds:
                vals = [recs[j].value for j in idx if lo <= recs[j].t <= hi and hi + 1 + grace > wms[j]]
                assert vals
                w = (key, lo, hi + 1)
                windows[w] = fold(vals)
                if hi + 1 + grace <= final_wm:
                    closed[w] = windows[w]
    return Expected(windows, closed, late)


@dataclass
class _Sess:
    start: int
    end: int
    values: list[Any] = field(default_factory=list)


def session(
    parts: dict[int, list[Rec]], spec: Session, fold: Fold, lateness: int, flush: int | None = None
) -> Expected:
    gap, grace = spec.gap_ms, spec.grace_ms
    windows: dict[Win, Any] = {}
    closed: dict[Win, Any] = {}
    late: set[int] = set()
    for recs in parts.values():
        sessions: dict[Hashable, list[_Sess]] = defaultdict(list)
        wm = NONE
        for r in recs:
            wm = max(wm, r.t - lateness)
            mine = sessions[r.key]
            over = [s for s in mine if s.start < r.t + gap and s.end > r.t]
            if r.t + gap + grace <= wm or any(s.end + grace <= wm for s in over):
                late.add(r.id)
                continue
            merged = _Sess(min([r.t, *(s.start for s in over)]), max([r.t + gap, *(s.end for s in over)]))
            for s in sorted(over, key=lambda s: s.start):
                merged.values += s.values
                mine.remove(s)
            merged.values.append(r.value)
            mine.append(merged)
        if flush is not None:
            wm = max(wm, flush)
        for key, mine in sessions.items():
            for s in mine:
                w = (key, s.start, s.end)
                windows[w] = fold(s.values)
                if s.end + grace <= wm:
                    closed[w] = windows[w]
    return Expected(windows, closed, late)


def oracle(
    parts: dict[int, list[Rec]], spec: Any, fold: Fold, lateness: int, flush: int | None = None
) -> Expected:
    if isinstance(spec, Sliding):
        return sliding(parts, spec, fold, lateness, flush)
    if isinstance(spec, Session):
        return session(parts, spec, fold, lateness, flush)
    return fixed(parts, spec, fold, lateness, flush)
