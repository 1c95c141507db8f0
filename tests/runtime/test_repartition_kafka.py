"""Re-keying before a window repartitions (issue 8): `select_key` + a tumbling count over 4 partitions,
with the new keys spread over every source partition, equals an oracle exactly -- each (key, window)
once, with its full count -- across a SIGKILL, and a replay from scratch gives the same output.

Determinism: the repartition topic interleaves the four source partitions in whatever order they were
fetched, so the grace (60 s) covers the whole input (20 s of event time) and nothing is late whatever
the interleaving; the windows are closed afterwards by one record per user far ahead, produced once the
input before it is consumed."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import orjson

from streamsvc.config import Settings
from streamsvc.dlq.records import dlq_headers
from streamsvc.runtime.internal_topics import agent_group_id, internal_topics
from streamsvc.runtime.topics import admin_client, partition_counts, read_all
from streamsvc.runtime.worker import Worker
from streamsvc.serde import StringSerde
from streamsvc.serde.base import SerdeContext
from streamsvc.serde.windowed import TimeWindowedSerde
from streamsvc.topology.loader import load_topology
from tests.support import ROOT, WorkerProcess, committed_offsets, produce, wait_for

TOPOLOGY = str(ROOT / "tests" / "topologies" / "rekeyed_count.py")
SIZE, PARTITIONS, USERS = 1_000, 4, 40
Key = tuple[str, int, int]


def generate(n: int, seed: int) -> tuple[list[tuple[bytes, dict[str, object]]], int]:
    """(random source key, value) records: every user on every source partition; a few bad ones."""
    rng = random.Random(seed)
    base = (int(time.time() * 1000) - 600_000) // 60_000 * 60_000
    records: list[tuple[bytes, dict[str, object]]] = []
    for i in range(n):
        value: dict[str, object] = {"user": f"u{rng.randrange(USERS)}", "t": base + i}
        if i % 997 == 0:
            del value["user"]  # cannot be re-keyed: DLQ
        elif i % 991 == 0:
            value["user"] = None  # a None key cannot be partitioned: DLQ
        records.append((f"src-{rng.randrange(10**9)}".encode(), value))
    return records, base


def oracle(records: list[tuple[bytes, dict[str, object]]]) -> tuple[Counter[tuple[Key, int]], int]:
    counts: Counter[Key] = Counter()
    bad = 0
    for _, value in records:
        user = value.get("user")
        if user is None:
            bad += 1
            continue
        t = int(value["t"])  # type: ignore[call-overload]
        start = t - t % SIZE
        counts[(str(user), start, start + SIZE)] += 1
    return Counter({(k, n): 1 for k, n in counts.items()}), bad


def windows(bootstrap: str, topic: str, horizon: int) -> Counter[tuple[Key, int]]:
    """((user, start, end), count) of every window result before `horizon` (the closing records')."""
    serde, ctx = TimeWindowedSerde(SIZE, StringSerde()), SerdeContext(topic, True)
    got: Counter[tuple[Key, int]] = Counter()
    for m in read_all(bootstrap, topic):
        w = serde.deserialize(m.key(), ctx)
        if w.start_ms < horizon:
            got[((w.key, w.start_ms, w.end_ms), orjson.loads(m.value()))] += 1
    return got


def close_windows(bootstrap: str, source: str, horizon: int) -> None:
    """One record per user far ahead: raises the watermark of every repartition partition."""
    produce(
        bootstrap,
        source,
        [(f"close-{u}".encode(), orjson.dumps({"user": f"u{u}", "t": horizon})) for u in range(USERS)],
    )


def test_select_key_then_window_repartitions_exactly(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    records, base = generate(20_000, seed=8)
    horizon = base + 200_000
    expected, bad = oracle(records)
    source = names.topic("input", PARTITIONS)
    produce(bootstrap, source, [(k, orjson.dumps(v)) for k, v in records])
    # every user's records come from every source partition: without repartitioning, partial counts
    by_partition: dict[str, set[int]] = {}
    for m in read_all(bootstrap, source):
        by_partition.setdefault(orjson.loads(m.value()).get("user") or "", set()).add(m.partition() or 0)
    assert all(len(parts) == PARTITIONS for user, parts in by_partition.items() if user)

    app, replay = names("app"), names("replay")
    topology = load_topology(TOPOLOGY)
    settings = Settings(app_id=app, bootstrap_servers=bootstrap, topics={"input": source})
    planned = internal_topics(topology, settings, {source: PARTITIONS})
    assert [(t.name, t.partitions, t.kind) for t in planned] == [
        (f"{app}-per-user-repartition", PARTITIONS, "repartition"),
        (f"{app}.rekeyed-count.per-user.changelog", PARTITIONS, "changelog"),
    ]
    for a in (app, replay):
        names.track(f"{a}-per-user-repartition", f"{a}.rekeyed-count.per-user.changelog")
    names.track(names("output"), names("replayed"), source + ".dlq")
    env = {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_INSTANCE_ID": "r-0",
        "STREAMSVC_TOPIC_INPUT": source,
        "STREAMSVC_TOPIC_OUTPUT": names("output"),
        "STREAMSVC_COMMIT_INTERVAL_MS": "100",
        "STREAMSVC_BATCH_SIZE": "300",
    }
    group = agent_group_id(topology, settings)
    assert group == f"{app}-rekeyed-count"
    log = tmp_path / "worker.log"

    def progress() -> int:
        return sum(max(o, 0) for o in committed_offsets(bootstrap, group, source, PARTITIONS).values())

    first = WorkerProcess(TOPOLOGY, env, log=log)
    wait_for(lambda: progress() > 4_000, 120, f"progress before the SIGKILL (see {log})")
    first.kill()
    first.close()
    rest = WorkerProcess(TOPOLOGY, env, ("--until-caught-up",), log=log)
    assert rest.wait(180) == 0, f"see {log}"
    rest.close()
    counts = partition_counts(admin_client(bootstrap), [f"{app}-per-user-repartition"])
    assert counts == {f"{app}-per-user-repartition": PARTITIONS}

    # the replay: a fresh application over the same input
    replay_env = {**env, "STREAMSVC_APP_ID": replay, "STREAMSVC_TOPIC_OUTPUT": names("replayed")}
    worker = WorkerProcess(TOPOLOGY, replay_env, ("--until-caught-up",), log=log)
    assert worker.wait(180) == 0, f"see {log}"
    worker.close()

    close_windows(bootstrap, source, horizon)
    for run_env in (env, replay_env):
        worker = WorkerProcess(TOPOLOGY, run_env, ("--until-caught-up",), log=log)
        assert worker.wait(180) == 0, f"see {log}"
        worker.close()

    got = windows(bootstrap, names("output"), horizon)
    missing, extra = expected - got, got - expected
    assert got == expected, f"missing {len(missing)} e.g. {sorted(missing)[:3]}, extra {sorted(extra)[:3]}"
    assert windows(bootstrap, names("replayed"), horizon) == expected
    dead = [dlq_headers(m.headers()) for m in read_all(bootstrap, source + ".dlq")]
    assert len(dead) == 2 * bad, "each bad record dead-lettered once per application"
    assert {h["dlq.stage"] for h in dead} == {"process"}
    assert {h["dlq.error.class"] for h in dead} == {"KeyError", "streamsvc.runtime.repartition.RekeyError"}


def test_group_by_a_field_with_set_partitions_and_json_window_keys(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    """`group_by("page", partitions=2)`: the repartition topic gets 2 partitions and the window keys
    in the JSON layout carry (page, start, end), each window once with its full count."""
    from streamsvc.serde import JsonSerde
    from streamsvc.topology import Topology
    from streamsvc.windows import Count, Tumbling

    source = names.topic("clicks", 3)
    base = (int(time.time() * 1000) - 600_000) // 60_000 * 60_000
    rows = [(f"r{i}".encode(), {"page": f"p{i % 5}", "t": base + i * 10}) for i in range(600)]
    topology = Topology("pages")
    (
        topology.source("clicks", value_serde=JsonSerde(), event_time=lambda v, _ts: int(v["t"]))
        .group_by("page", name="by-page", partitions=2)
        .window("page-counts", Tumbling(1_000, grace_ms=60_000), Count(), key_format="json")
        .to("counts", value_serde=JsonSerde())
    )
    app = names("app")
    names.track(f"{app}-by-page-repartition", f"{app}.pages.page-counts.changelog", names("counts"))
    names.track(source + ".dlq")
    settings = Settings(
        app_id=app, bootstrap_servers=bootstrap, topics={"clicks": source, "counts": names("counts")}
    )
    produce(bootstrap, source, [(k, orjson.dumps(v)) for k, v in rows])
    for batch in ([], [(b"closer", {"page": f"p{p}", "t": base + 600_000}) for p in range(5)]):
        produce(bootstrap, source, [(k, orjson.dumps(v)) for k, v in batch])
        worker = Worker([topology], settings, until_caught_up=True)
        worker.start()
        assert worker.join(120) == 0
    counts = partition_counts(admin_client(bootstrap), [f"{app}-by-page-repartition"])
    assert counts == {f"{app}-by-page-repartition": 2}
    expected = Counter(((str(v["page"]), int(v["t"]) // 1000 * 1000) for _, v in rows))  # type: ignore[call-overload]
    got = Counter()
    for m in read_all(bootstrap, names("counts")):
        key = orjson.loads(m.key())
        got[((key["key"], key["start"]), key["end"] - key["start"], orjson.loads(m.value()))] += 1
    assert got == Counter({(k, 1_000, n): 1 for k, n in expected.items()})
