"""Update mode emits, after every batch, exactly the windows that batch changed, with their values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamsvc.windows import Count, Hopping, Session, Sliding, Tumbling, WindowedAggregation, WindowSpec
from tests.windows.oracle import Win, drive, generate, oracle

SPECS = [Tumbling(500, grace_ms=100), Hopping(600, 200), Sliding(250, grace_ms=50), Session(120, grace_ms=80)]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    ("spec", "vectorize"),
    [(s, v) for s in SPECS for v in (True, False) if not v or isinstance(s, Tumbling | Hopping)],
)
def test_update_mode_emits_every_change(spec: WindowSpec, vectorize: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lateness = int(rng.choice([0, 100]))
    parts = generate(rng, n=300, key_kind=["int", "str", "bytes"][seed])
    op = WindowedAggregation(spec, Count(), "update", allowed_lateness_ms=lateness, vectorize=vectorize)
    run = drive(op, parts, rng)

    # Count changes with every record, so "changed by the batch" is "value differs from before it".
    state: dict[int, dict[Win, Any]] = {p: {} for p in parts}
    materialized: dict[Win, Any] = {}
    saw_retraction = False
    for p, end, results in run.batches:
        before, after = state[p], oracle({p: parts[p][:end]}, spec, len, lateness).windows
        state[p] = after
        updates = [r for r in results if not r.tombstone]
        retracted = {(r.key, r.start_ms, r.end_ms) for r in results if r.tombstone}
        assert len({(r.key, r.start_ms, r.end_ms) for r in updates}) == len(updates), "one update per window"
        assert {(r.key, r.start_ms, r.end_ms): r.value for r in updates} == {
            w: v for w, v in after.items() if before.get(w) != v
        }
        assert retracted == {w for w in before if w not in after}
        saw_retraction |= bool(retracted)
        for w in retracted:
            del materialized[w]
        materialized.update({(r.key, r.start_ms, r.end_ms): r.value for r in updates})

    expected = oracle(parts, spec, len, lateness)
    assert run.late == expected.late
    assert materialized == expected.windows
    assert saw_retraction == isinstance(spec, Session)
