"""Exactly-once into Iceberg under SIGKILL at protocol points and at random moments, and under a zombie."""

from __future__ import annotations

import functools
import random
import threading
import time

from streamsvc.config import Settings
from streamsvc.runtime.topics import admin_client, end_offsets
from streamsvc.sinks.iceberg import metrics as im
from streamsvc.sinks.iceberg.catalog import config_env
from streamsvc.sinks.iceberg.offsets import read_offsets
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from tests.sinks.support import SinkProcess, SinkThread, events, offset_counts, read_rows
from tests.support import produce, wait_for

PARTITIONS = 4


def _held(catalog, table: str, group: str, topic: str) -> int:  # type: ignore[no-untyped-def]
    try:
        return sum(read_offsets(catalog.load_table(table), group, topic).offsets.values())
    except Exception:  # table not created yet
        return 0


def _progressed(catalog, group: str, topic: str, before: int) -> bool:  # type: ignore[no-untyped-def]
    return _held(catalog, "sink.events", group, topic) > before


def test_sigkill_at_commit_points_and_random_moments(bootstrap: str, names, catalog_setup, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("events", PARTITIONS)
    names.track(f"{topic}.dlq")
    app = names("app")
    group = f"{app}.events"
    config, catalog = catalog_setup
    env = {
        **config_env(config),
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_INSTANCE_ID": "crash-0",
        "STREAMSVC_TOPIC_EVENTS": topic,
        "STREAMSVC_BATCH_SIZE": "500",
        "TEST_SINK_INTERVAL_S": "0.3",
        "TEST_SINK_MAX_ROWS": "1500",
    }
    rng = random.Random(20261126)
    log = tmp_path / "sink.log"
    total, chunk = 24_000, 3_000
    faults = [
        "after_write",
        "after_catalog_commit",
        "before_write",
        "after_write",
        "after_commit",
        "random",
        "random",
    ]
    produced = 0
    for fault in faults:
        if produced < total:
            produce(bootstrap, topic, events(produced, produced + chunk, bad_every=997))
            produced += chunk
        extra = (
            {}
            if fault == "random"
            else {"STREAMSVC_FAULTS": f"{fault}:kill:{rng.randint(1, 3)}"}
        )
        before = _held(catalog, "sink.events", group, topic)
        sink = SinkProcess({**env, **extra}, log=log)
        try:
            if fault == "random":
                progressed = functools.partial(_progressed, catalog, group, topic, before)
                wait_for(progressed, 60, "sink progress")
                time.sleep(rng.uniform(0.0, 0.5))
                assert sink.proc.poll() is None, f"sink died on its own; see {log}"
                sink.kill()
            else:
                assert sink.wait(60) == -9, f"the fault hook at {fault} did not fire; see {log}"
        finally:
            sink.close()
    produce(bootstrap, topic, events(produced, total, bad_every=997))

    final = SinkProcess(env, args=("--until-caught-up",), log=log)
    try:
        assert final.wait(120) == 0, f"final sink failed; see {log}"
    finally:
        final.close()

    ends = end_offsets(admin_client(bootstrap), topic)
    assert read_offsets(catalog.load_table("sink.events"), group, topic).offsets == ends
    counts = offset_counts(read_rows(catalog, "sink.events"))
    dupes = {k: n for k, n in counts.items() if n > 1}
    assert not dupes, f"{len(dupes)} duplicated records, e.g. {sorted(dupes)[:5]}"
    ids = read_rows(catalog, "sink.events").column("id").to_pylist()
    assert sorted(ids) == [i for i in range(total) if i % 997], "missing or unexpected rows"


def test_zombie_writer_is_fenced_and_no_row_is_duplicated(bootstrap: str, names, catalog_setup) -> None:  # type: ignore[no-untyped-def]
    """A (paused between writing data files and the catalog commit) and B both own every partition.
    B commits first; A's commit must fail, re-check the fence, drop its buffer and re-seek."""
    topic = names.topic("events", 2)
    names.track(f"{topic}.dlq")
    app = names("app")
    produce(bootstrap, topic, events(0, 2000))
    config, catalog = catalog_setup
    spec = IcebergSinkSpec(name="events", source="events", table="sink.events", commit_interval_s=0.3)
    base = Settings(bootstrap_servers=bootstrap, app_id=app, instance_id="z", topics={"events": topic})
    paused, release = threading.Event(), threading.Event()

    def hold_first_commit(point: str) -> None:
        if point == "after_write" and not release.is_set():
            paused.set()
            assert release.wait(60)

    # Different consumer groups give both writers every partition; the offsets key (group) is shared.
    zombie = SinkThread(
        spec, base.with_overrides(consumer={"group.id": names("g-a")}), config, faults=hold_first_commit
    )
    fenced = im.COMMITS.labels(app=app, agent="events", table="sink.events", outcome="fenced")
    try:
        wait_for(paused.is_set, 60, "the zombie to reach its catalog commit")
        SinkThread(
            spec, base.with_overrides(consumer={"group.id": names("g-b")}), config, until_caught_up=True
        ).join(90)
        assert sorted(offset_counts(read_rows(catalog, "sink.events")).values()) == [1] * 2000
        release.set()
        wait_for(lambda: fenced._value.get() >= 1, 60, "the zombie to be fenced")
        produce(bootstrap, topic, events(2000, 3000))
        wait_for(
            lambda: _held(catalog, "sink.events", f"{app}.events", topic) == 3000,
            60,
            "the fenced writer to go on from the table's offsets",
        )
    finally:
        zombie.close()
    assert zombie.error is None
    rows = read_rows(catalog, "sink.events")
    assert sorted(offset_counts(rows).values()) == [1] * 3000
    assert sorted(rows.column("id").to_pylist()) == list(range(3000))
