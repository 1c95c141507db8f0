"""CDC: Debezium changes -> bronze changelog exactly once -> silver current state by copy-on-write merge."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from typing import Any

import orjson
from pyiceberg.catalog import Catalog

from streamsvc.config import Settings
from streamsvc.serde.debezium import DebeziumSerde
from streamsvc.sinks.iceberg.catalog import CatalogConfig, config_env
from streamsvc.sinks.iceberg.merge import SilverMerger, merge_key, read_position
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from tests.sinks.support import SinkThread, offset_counts, read_rows
from tests.support import ROOT, produce

PARTITIONS = 3
BRONZE, SILVER = "cdc.customers_bronze", "cdc.customers"
CDC_SPEC = str(ROOT / "tests" / "sinks" / "specs" / "cdc.py")

Change = tuple[bytes | None, bytes | None]


class Source:
    """A fake Debezium source: a keyed table whose changes are emitted as envelopes (+ the oracle)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.state: dict[int, dict[str, Any]] = {}
        self.lsn = 0
        self.ops: Counter[str] = Counter()

    def _envelope(self, op: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> bytes:
        self.lsn += 1
        self.ops[op] += 1
        src = {"lsn": self.lsn, "ts_ms": 1_700_000_000_000 + self.lsn, "table": "customers"}
        return orjson.dumps({"before": before, "after": after, "source": src, "op": op, "ts_ms": self.lsn})

    def changes(self, n: int, keys: int = 60) -> list[Change]:
        out: list[Change] = []
        while len(out) < n:
            k = self.rng.randrange(keys)
            key = orjson.dumps({"id": k})
            old = self.state.get(k)
            if old is None:
                row = {"id": k, "name": f"c{k}", "n": self.rng.randrange(1000)}
                out.append((key, self._envelope(self.rng.choice("cr"), None, row)))
                self.state[k] = row
            elif self.rng.random() < 0.7:
                row = {**old, "n": self.rng.randrange(1000), "name": f"c{k}-{self.lsn}"}
                out.append((key, self._envelope("u", old, row)))
                self.state[k] = row
            elif self.rng.random() < 0.8:
                out.append((key, self._envelope("d", old, None)))
                del self.state[k]
                if self.rng.random() < 0.6:
                    out.append((key, None))  # Debezium's tombstone after a delete
                    self.ops["tombstone"] += 1
            else:  # a tombstone alone (the delete compacted away): still removes the key
                out.append((key, None))
                self.ops["tombstone"] += 1
                del self.state[k]
        return out


def silver_state(catalog: Catalog) -> dict[int, dict[str, Any]]:
    rows = read_rows(catalog, SILVER).select(["id", "name", "n"]).to_pylist()
    ids = Counter(r["id"] for r in rows)
    assert max(ids.values(), default=1) == 1, f"duplicate keys in silver: {ids.most_common(3)}"
    return {r["id"]: r for r in rows}


def spec(silver: bool = True) -> IcebergSinkSpec:
    return IcebergSinkSpec(
        name="customers",
        source="customers",
        table=BRONZE,
        value_serde=DebeziumSerde(),
        cdc=True,
        silver_table=SILVER if silver else None,
        key_columns=("id",),
        commit_interval_s=0.3,
        merge_interval_s=3600,
    )


def test_bronze_once_and_silver_equals_oracle(bootstrap: str, names, catalog_setup) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("customers", PARTITIONS)
    names.track(f"{topic}.dlq")
    config, catalog = catalog_setup
    app = names("app")
    settings = Settings(bootstrap_servers=bootstrap, app_id=app, instance_id="c", topics={"customers": topic})
    source = Source(7)
    produced = 0
    for step in range(2):  # two rounds: the second merge starts from the first one's position
        batch = source.changes(400)
        produced += produce(bootstrap, topic, batch)
        SinkThread(spec(), settings, config, until_caught_up=True).join(90)

        bronze = read_rows(catalog, BRONZE)
        assert sorted(offset_counts(bronze).values()) == [1] * produced
        assert silver_state(catalog) == source.state, f"silver != oracle after round {step}"

    ops = Counter(bronze.column("_cdc_op").to_pylist())
    assert ops == source.ops and ops["tombstone"] > 0 and ops["d"] > 0 and ops["u"] > 0
    silver_table = catalog.load_table(SILVER)
    position = read_position(silver_table, BRONZE)
    bronze_table = catalog.load_table(BRONZE)
    assert sum(position.offsets.values()) == produced
    assert position.snapshot_id == bronze_table.metadata.current_snapshot_id
    assert silver_table.properties[merge_key(BRONZE)] == position.encode()
    # Idempotent: nothing new -> no commit.
    merger = SilverMerger(catalog, BRONZE, SILVER, ["id"], f"{app}.customers", topic)
    snapshots = len(silver_table.snapshots())
    assert not merger.merge().committed
    assert len(catalog.load_table(SILVER).snapshots()) == snapshots


def _merge_process(config: CatalogConfig, env: dict[str, str], kill_at: str | None) -> int:
    extra = {"STREAMSVC_FAULTS": f"{kill_at}:kill"} if kill_at else {}
    proc = subprocess.run(
        [sys.executable, "-m", "streamsvc.cli.iceberg", "merge", CDC_SPEC],
        env={**os.environ, **config_env(config), **env, **extra},
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert kill_at is not None or proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc.returncode


def test_merge_crash_leaves_silver_correct(bootstrap: str, names, catalog_setup) -> None:  # type: ignore[no-untyped-def]
    topic = names.topic("customers", PARTITIONS)
    names.track(f"{topic}.dlq")
    config, catalog = catalog_setup
    app = names("app")
    settings = Settings(bootstrap_servers=bootstrap, app_id=app, instance_id="k", topics={"customers": topic})
    env = {
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_TOPIC_CUSTOMERS": topic,
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
    }
    source = Source(11)

    produce(bootstrap, topic, source.changes(300))
    SinkThread(spec(silver=False), settings, config, until_caught_up=True).join(90)
    first = dict(source.state)
    assert _merge_process(config, env, "merge_before_commit") == -9  # files written, no commit
    assert not catalog.load_table(SILVER).scan().to_arrow().num_rows
    assert _merge_process(config, env, None) == 0
    assert silver_state(catalog) == first

    produce(bootstrap, topic, source.changes(300))
    SinkThread(spec(silver=False), settings, config, until_caught_up=True).join(90)
    assert _merge_process(config, env, "merge_after_delete") == -9  # delete staged, nothing committed
    assert silver_state(catalog) == first
    assert _merge_process(config, env, "merge_after_commit") == -9  # committed, process dies
    assert silver_state(catalog) == source.state
    snapshots = len(catalog.load_table(SILVER).snapshots())
    assert _merge_process(config, env, None) == 0  # the re-run finds nothing new
    assert len(catalog.load_table(SILVER).snapshots()) == snapshots
    assert silver_state(catalog) == source.state
