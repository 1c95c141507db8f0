"""Acceptance: during a real run with poison records, late records and an Iceberg sink, /metrics counts
exactly what happened, the accounting invariant holds on it, and the lag gauge equals the lag computed
with the admin client, under exactly-once and at-least-once; logs are JSON with correlation fields."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from streamsvc.dlq.records import dlq_headers
from streamsvc.runtime.topics import read_all
from streamsvc.sinks.iceberg.offsets import read_offsets
from tests.observability.support import (
    ObservedRun,
    late_records,
    poison_and_good,
    produce_transaction,
    scrape,
    total,
)
from tests.support import wait_for


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_counters_lag_and_logs_match_reality(bootstrap: str, names, tmp_path: Path, guarantee: str) -> None:  # type: ignore[no-untyped-def]
    run = ObservedRun(bootstrap, names, tmp_path, guarantee)
    try:
        run.wait_ready()
        t0 = int(time.time() * 1000)
        records, exp = poison_and_good(t0, 0, 60)
        produce_transaction(bootstrap, run.input, records)
        run.wait_consumed(exp.consumed)
        produce_transaction(bootstrap, run.input, late_records(t0, 6))
        exp.consumed += 6
        exp.late = 6
        samples = run.wait_consumed(exp.consumed)
        run.feed_sink()

        # Counters equal the actual record counts, per outcome and per DLQ stage.
        app = {"app": run.app, "topic": run.input}
        assert total(samples, "streamsvc_records_consumed_total", **app) == exp.consumed
        assert total(samples, "streamsvc_records_emitted_total", **app) == exp.emitted
        assert total(samples, "streamsvc_records_filtered_total", **app) == exp.filtered
        assert total(samples, "streamsvc_records_late_total", **app) == exp.late
        for stage, n in exp.dead.items():
            assert total(samples, "streamsvc_records_dead_lettered_total", **app, stage=stage) == n, stage
        classes = {
            lb["error_class"]: v for name, lb, v in samples if name == "streamsvc_records_dead_lettered_total"
        }
        assert classes["streamsvc.errors.MalformedPayloadError"] == 5
        assert classes["streamsvc.errors.ExpectationFailed"] == 4
        assert [v for c, v in classes.items() if c.endswith("Boom")] == [3]
        dead = sum(exp.dead.values())
        outcomes = sum(
            total(samples, f"streamsvc_records_{o}_total", **app)
            for o in ("emitted", "filtered", "dead_lettered", "late")
        )
        assert outcomes == exp.consumed  # the invariant, on the exported counters
        # ... and the DLQ topic really holds that many records.
        dlq = read_all(bootstrap, run.input + ".dlq")
        stages = [dlq_headers(m.headers())["dlq.stage"] for m in dlq]
        assert len(dlq) == dead + exp.late and stages.count("late") == exp.late
        assert total(samples, "streamsvc_transactions_committed_total", app=run.app) >= 1
        assert total(samples, "streamsvc_end_to_end_latency_seconds_count", app=run.app) >= 1
        assert total(samples, "streamsvc_agent_info", app=run.app, guarantee=guarantee) == 1

        # Worker lag per partition = LSO - committed offset, as the admin client sees it. Every partition
        # ends with a transaction marker, which the group's committed offset never passes: lag 1 each.
        expected = run.admin_lag(run.input, f"{run.app}-observed", 2)
        assert expected == {0: 1, 1: 1}

        def worker_lag() -> dict[int, float] | None:
            s = scrape(run.worker_url)
            got = {
                int(lb["partition"]): v
                for n, lb, v in s
                if n == "streamsvc_consumer_lag_records" and lb["app"] == run.app
            }
            return got if got == expected else None

        wait_for(worker_lag, 30, f"worker lag gauge == admin lag {expected}")

        # Sink: 50 rows committed (5 undecodable dead-lettered), 20 buffered: lag 20 against the table.
        table_offsets = read_offsets(run.catalog.load_table(run.table), f"{run.sink_app}.events", run.events)
        from streamsvc.runtime.topics import admin_client, end_offsets

        end = end_offsets(admin_client(bootstrap), run.events)[0]
        sink_expected = end - table_offsets.offsets[0]
        assert sink_expected == 20

        def sink_lag() -> list[float] | None:
            s = scrape(run.sink_url)
            lag = total(s, "streamsvc_consumer_lag_records", app=run.sink_app, partition="0")
            table_lag = total(s, "streamsvc_iceberg_offset_lag_records", app=run.sink_app)
            return [lag, table_lag] if lag == table_lag == sink_expected else None

        wait_for(sink_lag, 30, "sink lag gauges == 20")
        s = scrape(run.sink_url)
        sink = {"app": run.sink_app, "topic": run.events}
        assert total(s, "streamsvc_records_consumed_total", **sink) == 55
        assert total(s, "streamsvc_records_emitted_total", **sink) == 50
        assert total(s, "streamsvc_records_dead_lettered_total", **sink, stage="decode") == 5
        assert total(s, "streamsvc_iceberg_rows_written_total", app=run.sink_app) == 50
        assert total(s, "streamsvc_iceberg_table_rows", app=run.sink_app) == 50
        assert total(s, "streamsvc_iceberg_snapshots", app=run.sink_app) >= 1
        assert total(s, "streamsvc_iceberg_data_files", app=run.sink_app) >= 1
    finally:
        run.close()

    # Logs: every stderr line is JSON (no raw `%3|...|FAIL|` librdkafka lines, though the worker had an
    # unreachable broker to complain about), with the correlation fields.
    worker_lines = run.worker_log.read_text().splitlines()
    assert worker_lines and not [ln for ln in worker_lines if ln.startswith("%")]
    worker_events = [orjson.loads(ln) for ln in worker_lines]
    librdkafka = [e for e in worker_events if e["event"] == "librdkafka"]
    assert librdkafka, "the unreachable broker should have made librdkafka log"
    assert all(e["app"] == run.app and e["agent"] == "observed" for e in librdkafka if "agent" in e)
    assert any("127.0.0.1:1" in e["message"] for e in librdkafka)
    started = next(e for e in worker_events if e["event"] == "agent_started")
    assert started["app"] == run.app and started["agent"] == "observed"
    if guarantee == "exactly_once":
        assert started["transactional_id"] == f"{run.app}.observed.obs-0"
    sink_events = [orjson.loads(ln) for ln in run.sink_log.read_text().splitlines()]
    commit = next(e for e in sink_events if e["event"] == "committed")
    assert commit["app"] == run.sink_app and commit["agent"] == "events" and commit["topic"] == run.events
    assert commit["offsets"] == {f"{run.events}:0": 55} and commit["level"] == "info"
