"""Small-file compaction and maintenance racing a live sink, on SQLite, PostgreSQL and REST + S3."""

from __future__ import annotations

import threading

import orjson
import pytest
from pyiceberg.exceptions import NoSuchTableError

from streamsvc.cli import iceberg as iceberg_cli
from streamsvc.config import Settings
from streamsvc.runtime.topics import admin_client, end_offsets
from streamsvc.sinks.iceberg.catalog import config_env
from streamsvc.sinks.iceberg.offsets import read_offsets
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from tests.sinks.support import (
    MaintainProcess,
    SinkProcess,
    SinkThread,
    checksum,
    data_files,
    events,
    offset_counts,
    read_rows,
)
from tests.support import produce, wait_for

TABLE = "sink.events"


def _env(bootstrap: str, config, app: str, topic: str, interval_s: float, max_rows: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        **config_env(config),
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_INSTANCE_ID": "c-0",
        "STREAMSVC_TOPIC_EVENTS": topic,
        "STREAMSVC_BATCH_SIZE": "1000",
        "TEST_SINK_INTERVAL_S": str(interval_s),
        "TEST_SINK_MAX_ROWS": str(max_rows),
        "TEST_SINK_PARTITION_BY": "identity(region)",
        "TEST_SINK_MAINTAIN_EVERY": "20",  # flat commit latency: expire + merge manifests in the agent
    }


def _report(out: bytes) -> dict:  # type: ignore[type-arg]
    """The one report line `maintain` prints (log lines, also JSON, carry an "event")."""
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    reports = [r for r in lines if "table" in r and "event" not in r]
    assert len(reports) == 1, out
    return reports[0]  # type: ignore[no-any-return]


def _files(catalog) -> int:  # type: ignore[no-untyped-def]
    try:
        return data_files(catalog, TABLE)
    except NoSuchTableError:
        return 0


@pytest.mark.slow
def test_compaction_after_200k_rows_of_small_commits_survives_kill_9(
    bootstrap: str, names, catalog_setup, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """200,000 rows in 2,000-row commits (what a sink committing every second writes at 2,000 rows/s), 3
    table partitions: compaction leaves <= 1/20 of the files, the same rows and offsets, also when it is
    SIGKILLed before or after its commit; the sink then goes on exactly once."""
    topic = names.topic("events", 4)
    names.track(f"{topic}.dlq")
    config, catalog = catalog_setup
    app = names("app")
    group = f"{app}.events"
    env = _env(bootstrap, config, app, topic, interval_s=1.0, max_rows=2000)
    log = tmp_path / "run.log"
    total = produce(bootstrap, topic, events(0, 200_000))
    sink = SinkProcess(env, args=("--until-caught-up",), log=log)
    try:
        assert sink.wait(600) == 0, f"sink failed; see {log}"
    finally:
        sink.close()
    before_files = data_files(catalog, TABLE)
    before_sum = checksum(read_rows(catalog, TABLE))
    offsets = read_offsets(catalog.load_table(TABLE), group, topic).offsets
    assert sum(offsets.values()) == total and before_files >= 200

    args = ("--table", TABLE, "--compact", "--older-than", "0", "--retain-last", "1")
    no_sweep = (*args, "--orphans-older-than", "1000")

    def run(*argv: str, kill_at: str | None = None) -> tuple[int, bytes]:
        extra = {"STREAMSVC_FAULTS": f"{kill_at}:kill"} if kill_at else {}
        out = tmp_path / "maintain.out"
        proc = MaintainProcess({**env, **extra}, argv, log=out)
        try:
            code = proc.wait(300)
        finally:
            proc.close()
        text = out.read_bytes()
        out.unlink()
        return code, text

    def unchanged_rows_and_offsets() -> None:
        table = catalog.load_table(TABLE)
        assert read_offsets(table, group, topic).offsets == offsets
        assert checksum(read_rows(catalog, TABLE)) == before_sum

    assert run(*no_sweep, kill_at="compact_after_write")[0] == -9  # new files written, nothing committed
    assert data_files(catalog, TABLE) == before_files
    unchanged_rows_and_offsets()
    assert run(*no_sweep, kill_at="compact_after_commit")[0] == -9  # committed, then killed
    after_files = data_files(catalog, TABLE)
    assert after_files * 20 <= before_files, (before_files, after_files)
    unchanged_rows_and_offsets()
    assert catalog.load_table(TABLE).current_snapshot().summary.operation.value == "replace"

    code, out = run(*args, "--orphans-older-than", "0")  # nothing left to compact; sweep the leftovers
    assert code == 0, out
    report = _report(out)
    assert report["compaction"]["committed"] is False
    assert len(report["orphans_deleted"]) >= before_files  # the replaced small files + the killed run's
    unchanged_rows_and_offsets()

    produce(bootstrap, topic, events(200_000, 201_000))
    sink = SinkProcess(env, args=("--until-caught-up",), log=log)
    try:
        assert sink.wait(300) == 0, f"sink failed; see {log}"
    finally:
        sink.close()
    assert sorted(offset_counts(read_rows(catalog, TABLE)).values()) == [1] * 201_000


@pytest.mark.slow
def test_thirty_maintain_runs_overlapping_a_sink_that_commits_every_half_second(  # type: ignore[no-untyped-def]
    bootstrap: str, names, catalog_setup, tmp_path, monkeypatch, capsys
) -> None:
    topic = names.topic("events", 2)
    names.track(f"{topic}.dlq")
    config, catalog = catalog_setup
    app = names("app")
    group = f"{app}.events"
    env = _env(bootstrap, config, app, topic, interval_s=0.5, max_rows=100_000)
    for key, value in config_env(config).items():
        monkeypatch.setenv(key, value)
    log = tmp_path / "sink.log"
    stop = threading.Event()
    produced = [0]

    def keep_producing() -> None:  # records arrive all the time, so the sink commits every 0.5 s
        while not stop.is_set():
            produced[0] += produce(bootstrap, topic, events(produced[0], produced[0] + 100))
            stop.wait(0.05)

    produced[0] = produce(bootstrap, topic, events(0, 500))
    sink = SinkProcess(env, log=log)
    producer = threading.Thread(target=keep_producing, daemon=True)
    try:
        producer.start()
        wait_for(lambda: _files(catalog) >= 12, 120, "the sink's first commits")
        argv = ["--log-level", "WARNING", "maintain", "--table", TABLE, "--compact", "--older-than", "0"]
        argv += ["--retain-last", "3", "--orphans-older-than", "0.005", "--min-input-files", "2"]
        reports = []
        for run in range(30):
            capsys.readouterr()
            code = iceberg_cli.main(argv)
            out = capsys.readouterr()
            assert code == 0, f"maintain run {run} exited {code}: {out.err[-2000:]}"
            reports.append(_report(out.out.encode()))
            assert sink.proc.poll() is None, f"the sink died; see {log}"
        stop.set()
        producer.join(60)
        ends = end_offsets(admin_client(bootstrap), topic)
        wait_for(
            lambda: read_offsets(catalog.load_table(TABLE), group, topic).offsets == ends,
            120,
            "the sink to commit everything",
        )
        sink.terminate()
        assert sink.wait(60) == 0, f"sink did not drain cleanly; see {log}"
    finally:
        stop.set()
        sink.close()
    assert sum(r["compaction"]["rewritten_files"] for r in reports) > 0
    rows = read_rows(catalog, TABLE)
    assert sorted(offset_counts(rows).values()) == [1] * produced[0]
    assert sorted(rows.column("id").to_pylist()) == list(range(produced[0]))


def test_in_agent_maintenance_compacts(bootstrap: str, names, catalog_setup) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("events", 1)
    names.track(f"{topic}.dlq")
    config, catalog = catalog_setup
    app = names("app")
    settings = Settings(
        bootstrap_servers=bootstrap, app_id=app, instance_id="m", topics={"events": topic}, batch_size=50
    )
    spec = IcebergSinkSpec(
        name="events",
        source="events",
        table=TABLE,
        max_rows=50,
        maintain_every_commits=10,
        maintain_retain_last=3,
        maintain_compact=True,
    )
    produce(bootstrap, topic, events(0, 1000))
    sink = SinkThread(spec, settings, config, until_caught_up=True)
    sink.join(120)
    assert sink.agent.commits >= 20 and len(sink.agent.maintain_seconds) >= 2
    assert data_files(catalog, TABLE) < 10  # 20 commits of one file each, compacted every 10 commits
    assert read_offsets(catalog.load_table(TABLE), f"{app}.events", topic).offsets == {0: 1000}
    assert sorted(offset_counts(read_rows(catalog, TABLE)).values()) == [1] * 1000
