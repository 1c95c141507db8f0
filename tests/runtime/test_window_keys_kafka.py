"""Window results keyed by (key, start, end) (issue 8): in update mode every session retraction is a
tombstone on the exact windowed key it retracts, so replaying the output topic into a table (latest
value per key, tombstones delete) gives exactly the final-mode results."""

from __future__ import annotations

import random
import time
from collections import Counter

import orjson

from streamsvc.config import Settings
from streamsvc.runtime.topics import read_all
from streamsvc.runtime.worker import Worker
from streamsvc.serde import JsonSerde, StringSerde
from streamsvc.serde.base import SerdeContext
from streamsvc.serde.windowed import SessionWindowedSerde, Windowed
from streamsvc.topology import Topology
from streamsvc.windows import Count, Session
from tests.support import produce

GAP, GRACE, PARTITIONS = 300, 400, 3


def sessions(emit: str) -> Topology:
    top = Topology(f"sessions-{emit}")
    (
        top.source("input", value_serde=JsonSerde(), key_serde=StringSerde(), event_time=lambda v, _: v["t"])
        .window("sessions", Session(GAP, grace_ms=GRACE), Count(), emit=emit)  # type: ignore[arg-type]
        .to("output", value_serde=JsonSerde())
    )
    return top


def generate(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Bursts per key with out-of-order arrivals, so sessions grow at both ends and merge."""
    rng = random.Random(seed)
    base = (int(time.time() * 1000) - 900_000) // 60_000 * 60_000
    rows: list[tuple[bytes, bytes]] = []
    for i in range(n):
        t = base + i * 7 + rng.randrange(-350, 350)
        if rng.random() < 0.2:
            t += rng.choice((-1, 1)) * rng.randrange(GAP, 3 * GAP)  # bridges or starts sessions
        rows.append((f"k{rng.randrange(9)}".encode(), orjson.dumps({"t": t})))
    last = base + n * 7 + 100_000  # far ahead: closes every session of the data above
    rows += [(f"k{k}".encode(), orjson.dumps({"t": last})) for k in range(9)]
    return rows


def test_update_retractions_name_their_session_so_the_compacted_output_equals_final(
    bootstrap: str, names
) -> None:  # type: ignore[no-untyped-def]
    source = names.topic("input", PARTITIONS)
    rows = generate(6_000, seed=3)
    horizon = orjson.loads(rows[-1][1])["t"]
    produce(bootstrap, source, rows)
    out: dict[str, str] = {}
    for emit in ("update", "final"):
        app, out[emit] = names(f"app-{emit}"), names(f"out-{emit}")
        names.track(out[emit], f"{app}.sessions-{emit}.sessions.changelog", source + ".dlq")
        settings = Settings(
            app_id=app,
            bootstrap_servers=bootstrap,
            batch_size=50,
            topics={"input": source, "output": out[emit]},
        )
        worker = Worker([sessions(emit)], settings, until_caught_up=True)
        worker.start()
        assert worker.join(120) == 0
    serde = SessionWindowedSerde(GAP, StringSerde())
    ctx = SerdeContext(out["update"], True)

    table: dict[Windowed, int] = {}
    updates = tombstones = 0
    for m in read_all(bootstrap, out["update"]):
        key = serde.deserialize(m.key(), ctx)
        assert m.key() == serde.serialize(key, ctx), "the layout round-trips"
        if m.value() is None:
            tombstones += 1
            assert key in table, f"a retraction names a session that was emitted: {key}"
            del table[key]
        else:
            updates += 1
            table[key] = orjson.loads(m.value())
    assert tombstones > 50, "the input must make sessions merge"
    final: Counter[tuple[Windowed, int]] = Counter()
    for m in read_all(bootstrap, out["final"]):
        final[(serde.deserialize(m.key(), ctx), orjson.loads(m.value()))] += 1
    assert final and max(final.values()) == 1, "final mode emits each session once"
    compacted = Counter((k, n) for k, n in table.items() if k.start_ms < horizon)
    assert compacted == final
    assert updates > len(final)
