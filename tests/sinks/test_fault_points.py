"""Every fault point of the Iceberg sink x every fault kind (issue 7): 50,000 records on 4 partitions
with undecodable and mistyped records; the sink runs with one injected fault, is restarted the way
Kubernetes would when it exits, and the table must hold every good record exactly once and the DLQ
every bad one exactly once -- including a crash between the catalog commit and the dead-letter
transaction, which the next owner repairs. The full matrix runs under the `chaos` marker.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from streamsvc.dlq.records import dlq_headers
from streamsvc.runtime.topics import admin_client, end_offsets, read_all
from streamsvc.sinks.iceberg.catalog import config_env
from streamsvc.sinks.iceberg.offsets import read_offsets
from tests.sinks.support import SinkProcess, offset_counts, read_rows, sqlite_catalog
from tests.support import produce

PARTITIONS, RECORDS = 4, 50_000
EXIT = {"kill": -9, "raise": 1, "fatal": 2, "abortable": 0, "retriable": 0}
MATRIX = {
    "before_dead_letters": ("kill", "raise", "abortable", "fatal"),
    "before_write": ("kill", "raise", "abortable"),
    "after_write": ("kill", "raise", "abortable"),
    "after_catalog_commit": ("kill", "raise", "abortable", "fatal"),
    "after_commit": ("kill", "raise"),
}
DEFAULT_RUN = {
    ("after_catalog_commit", "kill"),
    ("after_write", "abortable"),
    ("before_dead_letters", "raise"),
}


def records(n: int) -> tuple[list[tuple[bytes, bytes]], set[int]]:
    """JSON events with an undecodable one every 997th and a mistyped `n` every 1013th; (records, bad ids)."""
    out, bad = [], set()
    for i in range(n):
        if i % 997 == 5:
            value, is_bad = b"{not json " + str(i).encode(), True
        elif i % 1013 == 11:
            value, is_bad = orjson.dumps({"id": i, "n": "not a number", "region": "r0"}), True
        else:
            value, is_bad = orjson.dumps({"id": i, "n": i % 7, "region": f"r{i % 3}"}), False
        out.append((str(i).encode(), value))
        if is_bad:
            bad.add(i)
    return out, bad


def _cases() -> list[object]:
    return [
        pytest.param(
            point,
            kind,
            marks=[] if (point, kind) in DEFAULT_RUN else [pytest.mark.chaos],
            id=f"{point}-{kind}",
        )
        for point, kinds in MATRIX.items()
        for kind in kinds
    ]


@pytest.mark.parametrize(("point", "kind"), _cases())
def test_sink_fault_point_leaves_table_and_dlq_exact(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path, point: str, kind: str
) -> None:
    topic = names.topic("events", PARTITIONS)
    names.track(f"{topic}.dlq")
    app = names("app")
    config, catalog = sqlite_catalog(tmp_path)
    data, bad = records(RECORDS)
    produce(bootstrap, topic, data)
    env = {
        **config_env(config),
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_INSTANCE_ID": "sink-0",
        "STREAMSVC_TOPIC_EVENTS": topic,
        "STREAMSVC_BATCH_SIZE": "1000",
        "TEST_SINK_INTERVAL_S": "1",
        "TEST_SINK_MAX_ROWS": "8000",
    }
    log = tmp_path / "sink.log"
    first = SinkProcess(
        {**env, "STREAMSVC_FAULTS": f"{point}:{kind}:3"}, args=("--until-caught-up",), log=log
    )
    try:
        code = first.wait(240)
    finally:
        first.close()
    assert code == EXIT[kind], f"the faulty sink exited {code}, expected {EXIT[kind]}; see {log}"
    if kind != "kill":
        assert "injected" in log.read_text(), f"the {kind} fault at {point} never fired; see {log}"
    if code != 0:
        again = SinkProcess(env, args=("--until-caught-up",), log=log)
        try:
            assert again.wait(240) == 0, f"the restarted sink did not finish cleanly; see {log}"
        finally:
            again.close()

    table = catalog.load_table("sink.events")
    assert read_offsets(table, f"{app}.events", topic).offsets == end_offsets(admin_client(bootstrap), topic)
    rows = read_rows(catalog, "sink.events")
    assert max(offset_counts(rows).values()) == 1, "a record landed twice"
    assert sorted(rows.column("id").to_pylist()) == [i for i in range(RECORDS) if i not in bad]
    dead: Counter[int] = Counter()
    for m in read_all(bootstrap, f"{topic}.dlq"):
        h = dlq_headers(m.headers())
        assert h["dlq.stage"] in ("decode", "process"), h
        dead[int(m.key() or b"-1")] += 1
    assert set(dead) == bad, (
        f"dead letters missing: {sorted(bad - set(dead))[:5]}, unexpected: {sorted(set(dead) - bad)[:5]}"
    )
    assert max(dead.values()) == 1, f"dead letters written twice: {[k for k, c in dead.items() if c > 1][:5]}"
