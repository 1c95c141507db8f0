"""Brute-force offline window oracles (`streamsvc.windows.reference`) and a batch driver for the operator."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamsvc.windows import WindowedAggregation, WindowResult
from streamsvc.windows.reference import (
    NONE,
    Expected,
    Fold,
    Rec,
    Win,
    fixed,
    oracle,
    session,
    sliding,
    watermarks,
)

__all__ = ["NONE", "Expected", "Fold", "Rec", "Win", "fixed", "oracle", "session", "sliding", "watermarks"]

# -- data and driver ------------------------------------------------------------------------------


def make_key(i: int, kind: str) -> Hashable:
    return {"int": i, "str": f"k{i}", "bytes": f"k{i}".encode()}[kind]


def generate(
    rng: np.random.Generator,
    *,
    partitions: int = 3,
    keys: int = 8,
    n: int = 400,
    span: int = 4000,
    disorder: int = 200,
    late_frac: float = 0.05,
    late_by: int = 3000,
    key_kind: str = "int",
    integral: bool = True,
) -> dict[int, list[Rec]]:
    """Records per partition in offset order; key i always lives in partition i % partitions."""
    parts: dict[int, list[Rec]] = {p: [] for p in range(partitions)}
    base = np.sort(rng.integers(0, span, n))
    for i in range(n):
        k = int(rng.integers(0, keys))
        t = int(base[i] + rng.integers(-disorder, disorder + 1))
        if rng.random() < late_frac:
            t -= int(rng.integers(0, late_by))
        value = float(rng.integers(-50, 50)) if integral else float(rng.normal() * 100)
        parts[k % partitions].append(Rec(i, make_key(k, key_kind), t, value))
    return parts


@dataclass
class Run:
    results: list[WindowResult] = field(default_factory=list)
    late: set[int] = field(default_factory=set)
    batches: list[tuple[int, int, list[WindowResult]]] = field(default_factory=list)  # (partition, end, out)

    def final(self) -> Counter[tuple[Any, ...]]:
        return Counter((r.key, r.start_ms, r.end_ms, r.value) for r in self.results)


def columns(recs: Sequence[Rec], rng: np.random.Generator | None = None) -> tuple[Any, Any, Any]:
    """keys, times, values; keys randomly as a list or a numpy array, to exercise both paths."""
    keys: Any = [r.key for r in recs]
    if rng is not None and rng.random() < 0.5 and keys and not isinstance(keys[0], str | bytes):
        keys = np.array(keys, dtype=np.int64)
    elif rng is not None and rng.random() < 0.3 and keys and isinstance(keys[0], bytes):
        keys = np.array(keys, dtype="S")
    return keys, np.array([r.t for r in recs], dtype=np.int64), np.array([r.value for r in recs])


def drive(
    op: WindowedAggregation,
    parts: dict[int, list[Rec]],
    rng: np.random.Generator,
    max_batch: int = 40,
    flush: int | None = None,
    start: dict[int, int] | None = None,
    run: Run | None = None,
) -> Run:
    """Feed each partition's records in order, in random-size batches, interleaving partitions randomly."""
    run = Run() if run is None else run
    pos = dict.fromkeys(parts, 0) if start is None else dict(start)
    while live := [p for p in parts if pos[p] < len(parts[p])]:
        p = live[int(rng.integers(0, len(live)))]
        n = int(rng.integers(1, max_batch + 1))
        batch = parts[p][pos[p] : pos[p] + n]
        pos[p] += len(batch)
        out = op.process(p, *columns(batch, rng))
        assert out.late.dtype == np.bool_ and out.late.shape == (len(batch),)
        run.results += out.results
        run.late |= {r.id for r, is_late in zip(batch, out.late.tolist(), strict=True) if is_late}
        run.batches.append((p, pos[p], out.results))
    if flush is not None:
        for p in parts:
            run.results += op.advance(p, flush)
    return run
