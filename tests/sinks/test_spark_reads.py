"""Spark 3.5 (iceberg-spark-runtime 1.10.1) reads the sink's bronze, silver and window tables through the
same catalog as the sink (JDBC on SQLite or PostgreSQL, REST + S3) with pyiceberg's counts and checksums,
including a time-travel read of an older snapshot. Slow (a JVM and Spark start): marker `spark`."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator, Sequence
from importlib.util import find_spec
from typing import Any

import orjson
import pyarrow as pa
import pytest

from streamsvc.config import Settings
from streamsvc.dev.lake import LocalLake
from streamsvc.dev.spark import spark_catalog_conf, spark_jars
from streamsvc.runtime.worker import Worker
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from streamsvc.topology.loader import load_topology
from tests.sinks.support import SinkThread, give_up, read_rows
from tests.sinks.test_cdc import BRONZE, SILVER, Source, spec
from tests.support import ROOT, produce

pytestmark = pytest.mark.spark

WINDOWS = "lake.window_counts"
WINDOW_TOPOLOGY = str(ROOT / "tests" / "topologies" / "windowed_count.py")
COLUMNS = {
    BRONZE: ("_kafka_partition", "_kafka_offset", "_cdc_op", "id", "name", "n"),
    SILVER: ("id", "name", "n"),
    WINDOWS: ("_kafka_partition", "_kafka_offset", "start", "end", "value"),
}


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    if find_spec("pyspark") is None:
        give_up()("pyspark is not installed (pip install -e '.[spark]')")
    from pyspark.sql import SparkSession

    jars = spark_jars(LocalLake.from_env().home)
    session = (
        SparkSession.builder.master("local[1]")
        .appName("streamsvc-spark-reads")
        .config("spark.jars", ",".join(str(j) for j in jars))
        .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    yield session
    session.stop()


def digest(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Order-independent digest of `columns` of `rows` (plain Python values from either engine)."""
    ordered = sorted(tuple(r[c] for c in columns) for r in rows)
    return hashlib.sha256(orjson.dumps(ordered)).hexdigest()


def ours(rows: pa.Table, columns: Sequence[str]) -> tuple[int, str]:
    return rows.num_rows, digest(rows.select(list(columns)).to_pylist(), columns)


def theirs(frame: Any, columns: Sequence[str]) -> tuple[int, str]:
    rows = [r.asDict() for r in frame.select(*columns).collect()]
    return len(rows), digest(rows, columns)


def window_table(bootstrap: str, names, settings: Settings, config) -> None:  # type: ignore[no-untyped-def]
    """Tumbling-window counts computed by a worker, landed by a sink: the window table."""
    source, output = names.topic("input", 2), names.topic("output", 2)
    names.track(f"{source}.dlq", f"{output}.dlq", f"{settings.app_id}.windowed-count.counts.changelog")
    base = (int(time.time() * 1000) - 600_000) // 60_000 * 60_000
    produce(
        bootstrap, source, [(f"k{i % 7}".encode(), orjson.dumps({"t": base + i * 37})) for i in range(3000)]
    )
    wsettings = settings.with_overrides(topics={"input": source, "output": output})
    worker = Worker([load_topology(WINDOW_TOPOLOGY)], wsettings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0
    sink = IcebergSinkSpec(name="windows", source="output", table=WINDOWS, commit_interval_s=0.3)
    SinkThread(sink, settings.with_overrides(topics={"output": output}), config, until_caught_up=True).join(
        90
    )


def test_spark_reads_every_table_type_like_pyiceberg(bootstrap: str, names, catalog_setup, spark) -> None:  # type: ignore[no-untyped-def]
    config, catalog = catalog_setup
    topic = names.topic("customers", 3)
    names.track(f"{topic}.dlq")
    settings = Settings(
        bootstrap_servers=bootstrap, app_id=names("app"), instance_id="s", topics={"customers": topic}
    )
    source = Source(5)
    produce(bootstrap, topic, source.changes(400))
    SinkThread(spec(), settings, config, until_caught_up=True).join(90)
    first = catalog.load_table(BRONZE).current_snapshot().snapshot_id
    produce(bootstrap, topic, source.changes(400))
    SinkThread(spec(), settings, config, until_caught_up=True).join(90)
    window_table(bootstrap, names, settings, config)

    name = config.name if config.catalog == "sql" else f"rest_{uuid.uuid4().hex[:8]}"
    for key, value in spark_catalog_conf(config, name).items():
        spark.conf.set(key, value)
    spark.conf.set(f"spark.sql.catalog.{name}.cache-enabled", "false")
    for table, columns in COLUMNS.items():
        mine = ours(read_rows(catalog, table), columns)
        assert mine[0] > 0, f"{table} is empty"
        assert theirs(spark.table(f"{name}.{table}"), columns) == mine, f"{table} differs in Spark"

    old = catalog.load_table(BRONZE).scan(snapshot_id=first).to_arrow()
    travelled = spark.sql(f"SELECT * FROM {name}.{BRONZE} VERSION AS OF {first}")
    assert 0 < old.num_rows < read_rows(catalog, BRONZE).num_rows
    assert theirs(travelled, COLUMNS[BRONZE]) == ours(old, COLUMNS[BRONZE])
