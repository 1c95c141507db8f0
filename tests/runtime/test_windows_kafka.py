"""Windowed aggregation through the real broker: final results and the late set equal an oracle
exactly, in one run and across SIGKILLs and a 1 -> 2 -> 1 scale-out (state restored from changelogs)."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import orjson
from confluent_kafka import Producer

from streamsvc.config import Settings
from streamsvc.dlq.records import dlq_headers
from streamsvc.runtime.topics import admin_client, read_all
from streamsvc.runtime.worker import Worker
from streamsvc.topology.loader import load_topology
from tests.support import ROOT, WorkerProcess, committed_offsets, wait_for

TOPOLOGY = str(ROOT / "tests" / "topologies" / "windowed_count.py")
SIZE, GRACE, PARTITIONS = 1_000, 500, 3


def generate(n: int, seed: int) -> dict[int, list[tuple[str, int]]]:
    """Per partition, (key, event time) in offset order: mostly ordered, some disorder, some very late."""
    rng = random.Random(seed)
    parts: dict[int, list[tuple[str, int]]] = {p: [] for p in range(PARTITIONS)}
    # Recent event times: window results carry them as Kafka timestamps, and the broker's time-based
    # retention would delete records stamped in the distant past while the test reads them.
    base = (int(time.time() * 1000) - 600_000) // 60_000 * 60_000
    for i in range(n):
        key = f"k{rng.randrange(12)}"
        partition = int(key[1:]) % PARTITIONS
        t = base + i * 20 + rng.randrange(-400, 400)
        if rng.random() < 0.03:
            t -= 4_000  # far behind: late unless a window is still open
        parts[partition].append((key, t))
    return parts


def oracle(
    parts: dict[int, list[tuple[str, int]]],
) -> tuple[Counter[tuple[str, int, int, int]], set[tuple[int, int]]]:
    """Final (key, start, end, count) results and late (partition, offset), one record at a time."""
    results: Counter[tuple[str, int, int, int]] = Counter()
    late: set[tuple[int, int]] = set()
    for partition, recs in parts.items():
        wm = -(2**62)
        counts: dict[tuple[str, int], int] = {}
        for offset, (key, t) in enumerate(recs):
            wm = max(wm, t)
            start = t - t % SIZE
            if start + SIZE + GRACE <= wm:
                late.add((partition, offset))
                continue
            counts[(key, start)] = counts.get((key, start), 0) + 1
        for (key, start), n in counts.items():
            if start + SIZE + GRACE <= wm:  # closed by the partition's final watermark
                results[(key, start, start + SIZE, n)] += 1
    return results, late


def load(bootstrap: str, topic: str, parts: dict[int, list[tuple[str, int]]], lo: int, hi: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True})
    for partition, recs in parts.items():
        for key, t in recs[lo:hi]:
            producer.produce(topic, orjson.dumps({"t": t}), key.encode(), partition=partition)
    assert producer.flush(60) == 0


def outputs(bootstrap: str, names) -> tuple[Counter[tuple[str, int, int, int]], set[tuple[int, int]]]:  # type: ignore[no-untyped-def]
    got: Counter[tuple[str, int, int, int]] = Counter()
    for m in read_all(bootstrap, names("output")):
        v = orjson.loads(m.value())
        got[((m.key() or b"").decode(), v["start"], v["end"], v["value"])] += 1
    late = set()
    for m in read_all(bootstrap, names("input") + ".dlq"):
        h = dlq_headers(m.headers())
        assert h["dlq.stage"] == "late", h
        late.add((int(h["dlq.source.partition"]), int(h["dlq.source.offset"])))
    return got, late


def members(bootstrap: str, group: str) -> int:
    """Members of the consumer group that hold at least one partition."""
    admin = admin_client(bootstrap)
    description = admin.describe_consumer_groups([group])[group].result(30)
    return sum(1 for m in description.members if m.assignment.topic_partitions)


def test_final_tumbling_counts_equal_the_oracle(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    parts = generate(6_000, seed=11)
    source = names.topic("input", PARTITIONS)
    names.track(names("output"), source + ".dlq")
    load(bootstrap, source, parts, 0, 10**9)
    app = names("app")
    names.track(f"{app}.windowed-count.counts.changelog")
    settings = Settings(
        app_id=app,
        bootstrap_servers=bootstrap,
        instance_id="w-0",
        topics={"input": source, "output": names("output")},
    )
    worker = Worker([load_topology(TOPOLOGY)], settings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0
    expected, expected_late = oracle(parts)
    got, late = outputs(bootstrap, names)
    assert expected_late, "the generator must produce late records"
    assert late == expected_late
    assert got == expected
    totals = worker.agents[0].totals
    assert totals.late[source] == len(expected_late)
    assert totals.balanced()


def test_crash_and_scale_out_restore_state_exactly(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    parts = generate(9_000, seed=23)
    source = names.topic("input", PARTITIONS)
    app = names("app")
    names.track(names("output"), source + ".dlq", f"{app}.windowed-count.counts.changelog")
    env = {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_TOPIC_INPUT": source,
        "STREAMSVC_TOPIC_OUTPUT": names("output"),
        "STREAMSVC_COMMIT_INTERVAL_MS": "100",
        "STREAMSVC_BATCH_SIZE": "200",
    }
    log = tmp_path / "workers.log"
    config = tmp_path / "streamsvc.toml"
    config.write_text('[consumer]\n"session.timeout.ms" = 6000\n')
    env["STREAMSVC_CONFIG"] = str(config)

    def progress() -> int:
        return sum(
            max(o, 0)
            for o in committed_offsets(bootstrap, f"{app}-windowed-count", source, PARTITIONS).values()
        )

    per_part = max(len(r) for r in parts.values())
    chunks = [per_part * i // 4 for i in range(5)]
    # 1 instance, SIGKILLed mid-window
    load(bootstrap, source, parts, chunks[0], chunks[1])
    first = WorkerProcess(TOPOLOGY, {**env, "STREAMSVC_INSTANCE_ID": "a"}, log=log)
    wait_for(lambda: progress() > 0, 90, "first progress")
    first.kill()
    first.close()
    # restart as 1, then scale to 2 while input flows, then back to 1
    a = WorkerProcess(TOPOLOGY, {**env, "STREAMSVC_INSTANCE_ID": "a"}, log=log)
    load(bootstrap, source, parts, chunks[1], chunks[2])
    before = progress()
    wait_for(lambda: progress() > before, 90, "restarted progress")
    b = WorkerProcess(TOPOLOGY, {**env, "STREAMSVC_INSTANCE_ID": "b"}, log=log)
    wait_for(
        lambda: members(bootstrap, f"{app}-windowed-count") == 2, 90, "the second instance to join the group"
    )
    load(bootstrap, source, parts, chunks[2], chunks[3])
    before = progress()
    wait_for(lambda: progress() > before, 90, "progress with two instances")
    b.terminate()
    assert b.wait(60) == 0
    b.close()
    # A static member does not leave on close (a restart must not rebalance): its partitions move back
    # once its session times out, as after a real scale-in.
    wait_for(
        lambda: members(bootstrap, f"{app}-windowed-count") == 1,
        90,
        "the group to shrink back to one instance",
    )
    load(bootstrap, source, parts, chunks[3], chunks[4])
    a.terminate()
    assert a.wait(60) == 0
    a.close()
    final = WorkerProcess(TOPOLOGY, {**env, "STREAMSVC_INSTANCE_ID": "a"}, ("--until-caught-up",), log=log)
    assert final.wait(120) == 0, f"see {log}"
    final.close()

    expected, expected_late = oracle(parts)
    got, late = outputs(bootstrap, names)
    assert late == expected_late
    missing, extra = expected - got, got - expected
    assert got == expected, (
        f"extra: {sorted(extra)[:4]}, missing: {len(missing)} {sorted(missing, key=lambda r: r[1])[:4]}"
    )


def test_wall_clock_fallback_closes_windows_of_idle_partitions(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    source = names.topic("input", PARTITIONS)
    app = names("app")
    names.track(names("output"), source + ".dlq", f"{app}.windowed-count.counts.changelog")
    base = (int(time.time() * 1000) - 120_000) // SIZE * SIZE
    parts = {p: [(f"k{p}", base + i * 100) for i in range(30)] for p in range(PARTITIONS)}  # in order
    load(bootstrap, source, parts, 0, 10**9)
    expected: Counter[tuple[str, int, int, int]] = Counter()
    for recs in parts.values():
        per_window = Counter((key, t - t % SIZE) for key, t in recs)
        expected.update((key, start, start + SIZE, n) for (key, start), n in per_window.items())
    settings = Settings(
        app_id=app,
        bootstrap_servers=bootstrap,
        instance_id="w-idle",
        idle_timeout_ms=500,
        wall_clock_fallback=True,
        topics={"input": source, "output": names("output")},
    )
    worker = Worker([load_topology(TOPOLOGY)], settings)
    worker.start()
    try:
        # Without more input the last window of every partition only closes through the wall clock.
        wait_for(lambda: outputs(bootstrap, names)[0] == expected, 60, "every window, the last ones included")
    finally:
        worker.stop()
        assert worker.join(60) == 0
    assert outputs(bootstrap, names)[0] == expected
