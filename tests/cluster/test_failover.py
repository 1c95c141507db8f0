"""Exactly-once through broker failures on the 3-broker cluster (issue #13 acceptance).

A keyed, windowed exactly-once worker runs while the feeder produces at a steady rate; brokers are
killed (kill -9) or rolled (SIGTERM) under it. Outputs, window results and the DLQ must equal the oracle
computed from the input log, and the worker must never need a manual restart: it may exit and be
restarted by the harness as Kubernetes would (reported), but nobody intervenes otherwise.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streamsvc.dev import kafka_cluster
from streamsvc.dev.cluster_state import partition_leader, transaction_coordinator, wait_fully_replicated
from streamsvc.runtime.topics import read_all
from streamsvc.sinks.iceberg.catalog import config_env
from tests.cluster.harness import PARTITIONS, AppRun
from tests.cluster.support import Kubelet
from tests.sinks.support import SinkProcess, offset_counts, read_rows, sqlite_catalog
from tests.support import wait_for

pytestmark = pytest.mark.cluster

RECORDS = 200_000
RATE = 4_000.0  # records/s: the run spans the faults instead of finishing before them


def _wait_leader_moved(admin: AdminClient, leader_of: object, dead: int, what: str) -> int:
    def moved() -> int | None:
        try:
            leader = leader_of()  # type: ignore[operator]
        except Exception:  # metadata from a broker that is going away
            return None
        return leader if leader not in (dead, -1) else None

    return int(wait_for(moved, 120, what, interval=0.25))


def test_leader_failover_keeps_the_output_exact(
    cluster: kafka_cluster.LocalCluster, bootstrap: str, admin: AdminClient, names, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    run = AppRun(bootstrap, admin, names, tmp_path)
    feeder = run.feed(RECORDS, RATE, seed=1301, first=0.3)
    timeline: list[str] = []
    try:
        run.workers.create("w-0")
        done = run.wait_progress(RECORDS // 10, 180, "the worker to commit a tenth of the input")
        timeline.append(f"feeder at {feeder.fraction():.0%}")

        # 1. kill -9 the broker leading the worker's transaction coordinator partition
        txn_id = run.transactional_id("w-0")
        coordinator = transaction_coordinator(admin, txn_id)
        kafka_cluster.stop_node(cluster, coordinator, signal.SIGKILL)
        timeline.append(f"killed broker {coordinator} (coordinator of {txn_id}) at {done} committed")
        moved = _wait_leader_moved(
            admin, lambda: transaction_coordinator(admin, txn_id), coordinator, "a new coordinator"
        )
        timeline.append(f"coordinator moved to broker {moved}")
        done = run.wait_progress(done + 5_000, 180, "progress with the coordinator's broker down")
        kafka_cluster.start_node(cluster, coordinator)
        wait_fully_replicated(admin)
        timeline.append(f"broker {coordinator} back and in sync at {done} committed")

        # 2. kill -9 the leader of an input partition (one that is not the coordinator now, if any)
        feeder.release(0.7)
        done = run.wait_progress(int(RECORDS * 0.35), 180, "progress into the next share of the input")
        timeline.append(f"feeder at {feeder.fraction():.0%}")
        leaders = {p: partition_leader(admin, run.source, p) for p in range(PARTITIONS)}
        current = transaction_coordinator(admin, txn_id)
        partition = next((p for p, b in leaders.items() if b != current), 0)
        victim = leaders[partition]
        kafka_cluster.stop_node(cluster, victim, signal.SIGKILL)
        timeline.append(f"killed broker {victim} (leader of input partition {partition}) at {done} committed")
        _wait_leader_moved(
            admin, lambda: partition_leader(admin, run.source, partition), victim, "a new input leader"
        )
        done = run.wait_progress(done + 5_000, 180, "progress with the input leader's broker down")
        kafka_cluster.start_node(cluster, victim)
        wait_fully_replicated(admin)
        timeline.append(f"broker {victim} back and in sync at {done} committed")

        feeder.release(1.0)
        run.wait_caught_up(feeder, 600)
        assert run.workers.delete("w-0") == 0, f"SIGTERM must drain and exit 0\n{run.workers.tail()}"
    finally:
        print(f"\nfailover timeline: {'; '.join(timeline)}; worker restarts: {run.workers.report()}")
        run.close()
    run.assert_no_open_transaction()
    got, expected = run.outcome()
    assert expected.dlq and expected.windows and expected.outputs
    assert got == expected, got.diff(expected)
    run.assert_replicated()


def test_rolling_restart_keeps_the_output_and_the_iceberg_table_exact(
    cluster: kafka_cluster.LocalCluster, bootstrap: str, admin: AdminClient, names, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    run = AppRun(bootstrap, admin, names, tmp_path)
    config, catalog = sqlite_catalog(tmp_path)
    sink_app = names("sink")
    names.track(f"{run.output}.dlq")
    sink_env = {
        **config_env(config),
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": sink_app,
        "STREAMSVC_INSTANCE_ID": "sink-0",
        "STREAMSVC_TOPIC_EVENTS": run.output,
        "TEST_SINK_INTERVAL_S": "1",
    }
    sink_logs = tmp_path / "sink"
    sink_logs.mkdir()
    sinks = Kubelet(lambda _name, log: SinkProcess(sink_env, log=log), sink_logs)
    feeder = run.feed(RECORDS, RATE, seed=1302, first=0.2)
    rolled: list[str] = []
    try:
        run.workers.create("w-0")
        sinks.create("sink-0")
        done = run.wait_progress(RECORDS // 10, 180, "the worker to commit a tenth of the input")
        for i, node in enumerate(cluster.nodes):
            feeder.release(0.2 + 0.25 * (i + 1))  # input flows while this broker is away
            done = run.wait_progress(done + 2_000, 180, f"progress before broker {node.node_id} stops")
            kafka_cluster.stop_node(cluster, node.node_id, signal.SIGTERM)
            done = run.wait_progress(done + 2_000, 180, f"progress with broker {node.node_id} stopped")
            kafka_cluster.start_node(cluster, node.node_id)
            wait_fully_replicated(admin)
            rolled.append(
                f"broker {node.node_id} rolled at {done} committed, feeder at {feeder.fraction():.0%}"
            )
        feeder.release(1.0)
        run.wait_caught_up(feeder, 600)
        assert run.workers.delete("w-0") == 0, f"SIGTERM must drain and exit 0\n{run.workers.tail()}"
        committed = read_all(bootstrap, run.output)
        wanted = Counter((run.output, m.partition(), m.offset()) for m in committed)

        def sunk() -> bool:
            try:
                return offset_counts(read_rows(catalog, "sink.events")) == wanted
            except Exception:  # no table yet
                return False

        try:
            wait_for(sunk, 300, "the Iceberg table to hold every output record", interval=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; sink restarts: {sinks.report()}\n{sinks.tail()}") from None
        assert sinks.delete("sink-0") == 0, f"the sink must drain and exit 0\n{sinks.tail()}"
    finally:
        print(
            f"\nrolling restart: {'; '.join(rolled)}; worker restarts: {run.workers.report()}; "
            f"sink restarts: {sinks.report()}"
        )
        sinks.close()
        run.close()
    run.assert_no_open_transaction()
    got, expected = run.outcome()
    assert got == expected, got.diff(expected)
    rows = read_rows(catalog, "sink.events")
    assert offset_counts(rows) == wanted, "the table must hold each output record exactly once"
    table = Counter(zip(*(rows.column(c).to_pylist() for c in ("id", "sq", "tag")), strict=True))
    assert table == Counter((i, sq, tag) for _key, i, sq, tag in expected.outputs.elements())
