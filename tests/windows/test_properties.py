"""Hypothesis: small adversarial streams (ties, window edges, big jumps) against the oracle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsvc.windows import Count, Hopping, Session, Sliding, Sum, Tumbling, WindowedAggregation, WindowSpec
from streamsvc.windows._codec import decode_key, encode_key
from tests.windows.oracle import Rec, columns, oracle

FLUSH = 10**6

# A dense cluster of times (ties, exact gap/size distances) mixed with spread-out and far-late ones.
times = st.one_of(st.integers(0, 15), st.integers(-30, 90))
records = st.lists(st.tuples(st.integers(0, 2), times, st.integers(-3, 3)), min_size=2, max_size=40)
splits = st.lists(st.integers(1, 8), min_size=1, max_size=10)
# Small, often-zero slack makes exact boundary hits (end + grace == watermark) common.
grace = st.sampled_from([0, 0, 1, 2, 5, 12])
lateness = st.sampled_from([0, 0, 1, 3, 12])


sizes = st.sampled_from([1, 2, 3, 5, 8, 13, 25])
FAMILIES: dict[str, st.SearchStrategy[WindowSpec]] = {
    "tumbling": st.builds(Tumbling, sizes, grace),
    "hopping": sizes.flatmap(lambda size: st.builds(Hopping, st.just(size), st.integers(1, size), grace)),
    "sliding": st.builds(Sliding, st.integers(1, 20), grace),
    "session": st.builds(Session, st.integers(1, 20), grace),
}
specs = st.one_of(*FAMILIES.values())


def _parts(raw: list[tuple[int, int, int]]) -> dict[int, list[Rec]]:
    parts: dict[int, list[Rec]] = {0: [], 1: []}
    for i, (k, t, v) in enumerate(raw):
        parts[k % 2].append(Rec(i, k, t, float(v)))
    return parts


def _feed(
    op: WindowedAggregation, parts: dict[int, list[Rec]], sizes: list[int], flush: bool
) -> tuple[Any, set[int]]:
    results, late, pos, turn = [], set(), dict.fromkeys(parts, 0), 0
    while live := [p for p in parts if pos[p] < len(parts[p])]:
        p = live[turn % len(live)]
        n = sizes[turn % len(sizes)]
        turn += 1
        batch = parts[p][pos[p] : pos[p] + n]
        pos[p] += n
        out = op.process(p, *columns(batch))
        results += out.results
        late |= {r.id for r, is_late in zip(batch, out.late.tolist(), strict=True) if is_late}
    if flush:
        for p in parts:
            results += op.advance(p, FLUSH)
    return sorted((r.key, r.start_ms, r.end_ms, r.value) for r in results), late


@pytest.mark.parametrize("family", FAMILIES)
@settings(max_examples=200, deadline=None)
@given(
    data=st.data(), raw=records, sizes=splits, lateness=lateness, flush=st.booleans(), vectorize=st.booleans()
)
def test_operator_equals_oracle(
    family: str,
    data: st.DataObject,
    raw: list[tuple[int, int, int]],
    sizes: list[int],
    lateness: int,
    flush: bool,
    vectorize: bool,
) -> None:
    spec = data.draw(FAMILIES[family])
    parts = _parts(raw)
    for agg, fold in ((Count(), len), (Sum(), lambda vs: sum(vs, 0.0))):
        expected = oracle(parts, spec, fold, lateness, FLUSH if flush else None)
        op = WindowedAggregation(spec, agg, allowed_lateness_ms=lateness, vectorize=vectorize)
        results, late = _feed(op, parts, sizes, flush)
        assert late == expected.late
        assert results == sorted(expected.final().elements())


@settings(max_examples=150, deadline=None)
@given(spec=specs, raw=records, sizes=splits, lateness=lateness)
def test_batching_never_changes_results_and_restore_is_exact(
    spec: WindowSpec, raw: list[tuple[int, int, int]], sizes: list[int], lateness: int
) -> None:
    parts = _parts(raw)
    one_by_one = _feed(WindowedAggregation(spec, Count(), allowed_lateness_ms=lateness), parts, [1], True)
    assert (
        _feed(WindowedAggregation(spec, Count(), allowed_lateness_ms=lateness), parts, sizes, True)
        == one_by_one
    )

    # Restore after every batch: the state round-trips through the changelog exactly.
    op = WindowedAggregation(spec, Count(), allowed_lateness_ms=lateness)
    logs: dict[int, list[tuple[bytes, bytes | None]]] = {0: [], 1: []}
    results, late = [], set()
    for p, recs in parts.items():
        for i in range(0, len(recs), sizes[0]):
            batch = recs[i : i + sizes[0]]
            out = op.process(p, *columns(batch))
            results += out.results
            late |= {r.id for r, is_late in zip(batch, out.late.tolist(), strict=True) if is_late}
            logs[p] += op.changes(p).items()
            op = WindowedAggregation(spec, Count(), allowed_lateness_ms=lateness)
            for q, log in logs.items():
                op.restore(q, log)
        results += op.advance(p, FLUSH)
    assert (sorted((r.key, r.start_ms, r.end_ms, r.value) for r in results), late) == one_by_one


@given(st.one_of(st.binary(), st.text(), st.integers(-(2**100), 2**100), st.none()))
def test_key_encoding_round_trips(key: Any) -> None:
    assert decode_key(encode_key(key)) == key
    assert type(decode_key(encode_key(key))) is type(key)


def test_numpy_keys_decode_to_python_values() -> None:
    assert decode_key(encode_key(np.int64(-5))) == -5
