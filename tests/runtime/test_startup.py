"""Issue #7, start-up: what must fail fast and clearly, and what must not hang (items 10, 14, 15).

Through `streamsvc run` / `streamsvc iceberg sink` child processes (exit code and stderr are the
contract) or `Worker` in-process, against the real broker.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer, TopicPartition

from streamsvc.config import Settings, load_settings
from streamsvc.errors import ConfigError
from streamsvc.runtime.topics import admin_client, ensure_topics, partition_counts
from streamsvc.runtime.worker import Worker
from streamsvc.serde import JsonSerde
from streamsvc.sinks.iceberg.catalog import config_env
from streamsvc.topology import Topology
from tests.sinks.support import SPEC, sqlite_catalog
from tests.support import ROOT, WorkerProcess, finish, free_port, read_settled, wait_for

WINDOWED_COUNT = str(ROOT / "tests" / "topologies" / "windowed_count.py")
KEYED_TRANSFORM = str(ROOT / "tests" / "topologies" / "keyed_transform.py")
PARTITIONS = 3


def _cli(argv: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`python -m <argv>` with `env` added; fails the test when it does not exit within `timeout`."""
    import os

    try:
        return subprocess.run(
            [sys.executable, "-m", *argv],
            env={**os.environ, **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{argv[:3]} did not exit within {timeout:.0f}s") from exc


def _with_prefix(admin, prefix: str) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix))


# ---- item 10: a global table whose partition was emptied does not hang the start -------------------


def _envelope(after: dict[str, object]) -> bytes:
    return orjson.dumps({"op": "c", "before": None, "after": after, "source": {"ts_ms": 1}, "ts_ms": 2})


def test_global_table_with_a_partition_whose_records_are_all_deleted_loads(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    customers = names.topic("customers", 2)
    orders = names.topic("orders", 1)
    names.track(names("enriched"), orders + ".dlq")
    producer = Producer({"bootstrap.servers": bootstrap})
    for cid in range(6):
        producer.produce(
            customers, _envelope({"id": cid, "name": f"c{cid}"}), str(cid).encode(), partition=cid % 2
        )
    assert producer.flush(30) == 0
    admin = admin_client(bootstrap)
    # Partition 1 keeps its offsets but loses every record: low == high == 3.
    for fut in admin.delete_records([TopicPartition(customers, 1, 3)], request_timeout=30).values():
        fut.result(30)
    for cid in range(6):
        producer.produce(orders, orjson.dumps({"id": 100 + cid}), str(cid).encode())
    assert producer.flush(30) == 0

    topology = Topology("enrich")
    table = topology.global_table("customers")
    topology.source("orders", value_serde=JsonSerde()).join(
        table, lambda o, c: {"order": o["id"], "customer": None if c is None else c["name"]}, how="left"
    ).to("enriched", value_serde=JsonSerde())
    topics = {"customers": customers, "orders": orders, "enriched": names("enriched")}
    settings = Settings(app_id=names("app"), bootstrap_servers=bootstrap, instance_id="g-0", topics=topics)
    worker = Worker([topology], settings, until_caught_up=True)
    assert finish(worker, 90) == 0, "the replicated table must load although partition 1 is empty"
    got = Counter(m.value() for m in read_settled(bootstrap, names("enriched")))
    assert got == Counter(
        orjson.dumps({"order": 100 + cid, "customer": f"c{cid}" if cid % 2 == 0 else None})
        for cid in range(6)
    )


# ---- item 14: a missing source topic fails fast and creates nothing ------------------------------


def _window_input(bootstrap: str, topic: str) -> Counter[tuple[str, int, int]]:
    """One key per partition, 40 records 50 ms apart, then one far ahead that closes their windows;
    returns the expected (key, window start, count) results."""
    base = (int(time.time() * 1000) - 600_000) // 60_000 * 60_000
    producer = Producer({"bootstrap.servers": bootstrap})
    counts: Counter[tuple[str, int]] = Counter()
    for p in range(PARTITIONS):
        for j in range(40):
            t = base + j * 50
            producer.produce(topic, orjson.dumps({"t": t}), f"k{p}".encode(), partition=p)
            counts[(f"k{p}", t - t % 1_000)] += 1
        producer.produce(topic, orjson.dumps({"t": base + 1_000_000}), f"k{p}".encode(), partition=p)
    assert producer.flush(30) == 0
    return Counter((k, s, n) for (k, s), n in counts.items())


def _window_results(bootstrap: str, topic: str) -> Counter[tuple[str, int, int]]:
    got: Counter[tuple[str, int, int]] = Counter()
    for m in read_settled(bootstrap, topic):
        v = orjson.loads(m.value())
        got[((m.key() or b"").decode(), v["start"], v["value"])] += 1
    return got


def _run_env(bootstrap: str, names, source: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": names("app"),
        "STREAMSVC_INSTANCE_ID": "missing-0",
        "STREAMSVC_TOPIC_INPUT": source,
        "STREAMSVC_TOPIC_OUTPUT": names("output"),
    }


def test_missing_source_topic_fails_fast_and_creates_no_internal_topics(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    source = names("input")  # not created
    admin = admin_client(bootstrap)
    env = _run_env(bootstrap, names, source)
    done = _cli(["streamsvc.cli.main", "run", WINDOWED_COUNT, "--until-caught-up"], env, timeout=60)
    assert done.returncode != 0
    assert source in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert _with_prefix(admin, names.prefix) == [], "no DLQ, changelog or output topic for a missing source"

    # Once the real topic exists (3 partitions), the same command works and its topics agree with it.
    ensure_topics(admin, {source: PARTITIONS})
    names.track(source)
    expected = _window_input(bootstrap, source)
    done = _cli(["streamsvc.cli.main", "run", WINDOWED_COUNT, "--until-caught-up"], env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    changelog = f"{names('app')}.windowed-count.counts.changelog"
    counts = partition_counts(admin, [source + ".dlq", changelog])
    assert counts == {source + ".dlq": PARTITIONS, changelog: PARTITIONS}
    assert _window_results(bootstrap, names("output")) == expected


def test_missing_source_topic_is_waited_for_when_configured(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """New setting `wait_for_sources_s`."""
    source = names("input")
    names.track(source)
    admin = admin_client(bootstrap)
    log = tmp_path / "worker.log"
    env = {**_run_env(bootstrap, names, source), "STREAMSVC_WAIT_FOR_SOURCES_S": "90"}
    worker = WorkerProcess(WINDOWED_COUNT, env, ("--until-caught-up",), log=log)
    try:
        wait_for(lambda: b"waiting_for_source_topics" in log.read_bytes(), 60, "the visible wait")
        assert worker.proc.poll() is None
        assert _with_prefix(admin, names.prefix) == []
        ensure_topics(admin, {source: PARTITIONS})
        expected = _window_input(bootstrap, source)
        assert worker.wait(150) == 0, f"see {log}"
    finally:
        worker.close()
    changelog = f"{names('app')}.windowed-count.counts.changelog"
    assert partition_counts(admin, [changelog]) == {changelog: PARTITIONS}
    assert _window_results(bootstrap, names("output")) == expected


def test_sink_missing_source_topic_fails_fast_and_creates_no_dlq(
    bootstrap: str, names, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    source = names("events")  # not created
    config, _ = sqlite_catalog(tmp_path)
    env = {
        **config_env(config),
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": names("app"),
        "STREAMSVC_INSTANCE_ID": "missing-0",
        "STREAMSVC_TOPIC_EVENTS": source,
    }
    done = _cli(["streamsvc.cli.iceberg", "sink", SPEC, "--until-caught-up"], env, timeout=60)
    assert done.returncode != 0
    assert source in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert _with_prefix(admin_client(bootstrap), names.prefix) == []


# ---- item 15: a wrong bootstrap server and an unknown config section -----------------------------


@pytest.mark.parametrize("command", ["run", "iceberg sink"])
def test_wrong_bootstrap_server_gives_one_clear_error(tmp_path: Path, command: str) -> None:
    wrong = f"127.0.0.1:{free_port()}"  # nothing listens there
    config, _ = sqlite_catalog(tmp_path)
    env = {**config_env(config), "STREAMSVC_BOOTSTRAP_SERVERS": wrong, "STREAMSVC_INSTANCE_ID": "wrong-0"}
    argv = (
        ["streamsvc.cli.main", "run", KEYED_TRANSFORM, "--until-caught-up"]
        if command == "run"
        else ["streamsvc.cli.iceberg", "sink", SPEC, "--until-caught-up"]
    )
    done = _cli(argv, env, timeout=60)
    lines = done.stderr.splitlines()
    assert done.returncode != 0
    assert any(f"cannot reach Kafka at {wrong}" in line for line in lines), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    client_logs = [line for line in lines if line.startswith("%") or "kafka_client_error" in line]
    assert client_logs == [], f"{len(client_logs)} client log lines, e.g. {client_logs[:2]}"
    assert len(lines) <= 5, f"{len(lines)} lines on stderr instead of one clear error"


def test_unknown_config_section_is_rejected(tmp_path: Path, bootstrap: str) -> None:
    path = tmp_path / "worker.toml"
    path.write_text('[streamsvc]\napp_id = "x"\n\n[topic]\ninput = "orders"\n')  # [topic], not [topics]
    with pytest.raises(ConfigError, match="topic"):
        load_settings(path, env={})
    done = _cli(
        ["streamsvc.cli.main", "run", KEYED_TRANSFORM, "--config", str(path), "--until-caught-up"],
        {"STREAMSVC_BOOTSTRAP_SERVERS": bootstrap, "STREAMSVC_INSTANCE_ID": "cfg-0"},
        timeout=60,
    )
    assert done.returncode != 0
    assert "[topic]" in done.stderr or "'topic'" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
