"""State that restarts in seconds (issue 8): a window store in RocksDB with a local checkpoint.

A clean stop and restart restores only the changelog's tail (nothing here) instead of its tens of
thousands of entries; a SIGKILL mid-run and a restart still give every window exactly once with its
exact count (the local store only ever holds committed state)."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamsvc.runtime.topics import admin_client, end_offsets, read_all
from streamsvc.serde import StringSerde
from streamsvc.serde.base import SerdeContext
from streamsvc.serde.windowed import SessionWindowedSerde, TimeWindowedSerde
from tests.support import ROOT, WorkerProcess, committed_offsets, produce, wait_for

TOPOLOGY = str(ROOT / "tests" / "topologies" / "stored_counts.py")
SIZE, PARTITIONS, KEYS = 3_600_000, 2, 40_000


def restores(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        if '"state_restored"' in line:
            out.append(orjson.loads(line))
    return out


@pytest.mark.parametrize("window", ["tumbling", "session"])
def test_restart_reads_the_tail_only_and_a_sigkill_stays_exact(
    bootstrap: str, names, tmp_path: Path, window: str
) -> None:  # type: ignore[no-untyped-def]
    """Tumbling: the window state lives in RocksDB; session: in memory, with a RocksDB copy."""
    rng = random.Random(4)
    now = int(time.time() * 1000)
    base = (now - SIZE) // SIZE * SIZE - SIZE  # one window, ended in the past: nothing is late
    rows = [(f"k{rng.randrange(KEYS)}", base + rng.randrange(SIZE)) for _ in range(60_000)]
    source = names.topic("input", PARTITIONS)
    app = names("app")
    changelog = f"{app}.stored-counts.counts.changelog"
    names.track(names("output"), source + ".dlq", changelog)
    env = {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_INSTANCE_ID": "s-0",
        "STREAMSVC_STATE_DIR": str(tmp_path / "state"),
        "STREAMSVC_TOPIC_INPUT": source,
        "STREAMSVC_TOPIC_OUTPUT": names("output"),
        "STREAMSVC_COMMIT_INTERVAL_MS": "200",
        "STREAMSVC_BATCH_SIZE": "500",
        "STREAMSVC_TEST_WINDOW": window,
    }
    group = f"{app}-stored-counts"
    encode = lambda k, t: (k.encode(), orjson.dumps({"t": t}))  # noqa: E731

    # 1. first half, SIGKILLed mid-run, then a restart until caught up
    produce(bootstrap, source, [encode(k, t) for k, t in rows[:30_000]])
    log = tmp_path / "kill.log"
    worker = WorkerProcess(TOPOLOGY, env, log=log)

    def progress() -> int:
        return sum(max(o, 0) for o in committed_offsets(bootstrap, group, source, PARTITIONS).values())

    wait_for(lambda: progress() > 5_000, 120, f"progress before the SIGKILL ({log})")
    worker.kill()
    worker.close()
    worker = WorkerProcess(TOPOLOGY, env, ("--until-caught-up",), log=log)
    assert worker.wait(240) == 0, f"see {log}"
    worker.close()

    # 2. the second half, then a clean stop; the changelog holds one entry per (key, window) or more
    produce(bootstrap, source, [encode(k, t) for k, t in rows[30_000:]])
    log = tmp_path / "second.log"
    worker = WorkerProcess(TOPOLOGY, env, ("--until-caught-up",), log=log)
    assert worker.wait(240) == 0, f"see {log}"
    worker.close()
    size = sum(end_offsets(admin_client(bootstrap), changelog).values())
    cells = len({(k, t // SIZE) for k, t in rows})
    assert size > cells > 20_000

    # 3. restart after the clean stop: only the (empty) tail is read from the changelog
    log = tmp_path / "restart.log"
    worker = WorkerProcess(TOPOLOGY, env, ("--until-caught-up",), log=log)
    assert worker.wait(240) == 0, f"see {log}"
    worker.close()
    restored = restores(log)
    assert len(restored) == PARTITIONS and all(r["local"] for r in restored)
    assert sum(r["entries"] for r in restored) <= 2 * PARTITIONS, restored  # the commit markers at most

    # 4. close the windows (one record far ahead per partition) and check every count
    closers = [(f"close-{p}", now + 10 * SIZE) for p in range(8)]
    produce(bootstrap, source, [encode(k, t) for k, t in closers])
    worker = WorkerProcess(TOPOLOGY, env, ("--until-caught-up",), log=tmp_path / "close.log")
    assert worker.wait(240) == 0
    worker.close()
    if window == "tumbling":
        serde: Any = TimeWindowedSerde(SIZE, StringSerde())
        expected = Counter({((k, start, start + SIZE), n): 1 for (k, start), n in _cells(rows).items()})
    else:
        serde = SessionWindowedSerde(SIZE, StringSerde())
        times: dict[str, list[int]] = {}
        for k, t in rows:
            times.setdefault(k, []).append(t)
        expected = Counter({((k, min(ts), max(ts) + SIZE), len(ts)): 1 for k, ts in times.items()})
    ctx = SerdeContext("out", True)
    got: Counter[tuple[tuple[str, int, int], int]] = Counter()
    for m in read_all(bootstrap, names("output")):
        w = serde.deserialize(m.key(), ctx)
        if not w.key.startswith("close-"):
            got[((w.key, w.start_ms, w.end_ms), orjson.loads(m.value()))] += 1
    assert got == expected


def _cells(rows: list[tuple[str, int]]) -> Counter[tuple[str, int]]:
    return Counter((k, t // SIZE * SIZE) for k, t in rows)
