"""What a shop run left behind, as the demo prints it: topic counts, dead letters by reason, windows,
Iceberg tables with their rows and offsets, lag, and the accounting invariant."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

from streamsvc.dlq.records import dlq_headers
from streamsvc.generate.harness import ShopRun
from streamsvc.generate.shop import TOPICS
from streamsvc.runtime.topics import admin_client, end_offsets
from streamsvc.sinks.iceberg.catalog import make_catalog

WINDOW_TOPICS = ("shop.click_sessions", "shop.revenue_1m", "shop.revenue_5m")


def topic_counts(run: ShopRun, worker: Any) -> dict[str, int]:
    """Records per topic of the run: inputs from their end offsets (written without transactions),
    outputs as the stopped pipeline committed them, dead-letter topics read back (read_committed)."""
    admin = admin_client(run.bootstrap)
    produced = worker.agents[0].totals.produced
    counts = {run.topic(t): sum(end_offsets(admin, run.topic(t), False).values()) for t in TOPICS}
    counts.update({run.topic(t): produced[run.topic(t)] for t in run.pipeline.OUTPUTS})
    for source in ("shop.clicks", "shop.public.orders"):
        name = f"{run.topic(source)}.dlq"
        counts[name] = len(run.read(name))
    return counts


def dlq_reasons(run: ShopRun) -> Counter[tuple[str, str, str, str]]:
    """(source topic, app, stage, error class) -> dead letters."""
    reasons: Counter[tuple[str, str, str, str]] = Counter()
    for source in ("shop.clicks", "shop.public.orders", "shop.public.customers"):
        for msg in run.read(f"{run.topic(source)}.dlq"):
            h = dlq_headers(msg.headers())
            app = {run.app_id: "pipeline", run.lake_app_id: "sink"}.get(h["dlq.app"], h["dlq.app"])
            reasons[source, app, h["dlq.stage"], h["dlq.error.class"].rsplit(".", 1)[-1]] += 1
    return reasons


def table_report(run: ShopRun) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(table, rows, offsets in its latest snapshot summary) per table of the run."""
    catalog = make_catalog(run.catalog_config)
    for spec in run.sinks():
        for name in (spec.table, spec.silver_table):
            if not name or not catalog.table_exists(name):
                continue
            table = catalog.load_table(name)
            snap = table.current_snapshot()
            summary = snap.summary.additional_properties if snap and snap.summary else {}
            offsets = {
                k.removeprefix("streamsvc."): orjson.loads(v)
                for k, v in summary.items()
                if k.startswith(("streamsvc.offsets.", "streamsvc.merge."))
            }
            yield name, table.scan().to_arrow().num_rows, offsets


def lag(run: ShopRun, inputs: dict[str, int], worker: Any) -> int:
    """Input records the pipeline has not consumed (end offsets minus what it consumed)."""
    admin = admin_client(run.bootstrap)
    totals = worker.agents[0].totals
    return sum(max(0, sum(end_offsets(admin, t, False).values()) - totals.consumed[t]) for t in inputs)


def invariant(worker: Any) -> list[tuple[str, int, int, int, int, int, bool]]:
    """Per source topic: consumed, emitted, dead-lettered, filtered, late, and whether they add up."""
    totals = worker.agents[0].totals
    dead: Counter[str] = Counter()
    for (topic, _stage), n in totals.dead_lettered.items():
        dead[topic] += n
    rows = []
    for topic in sorted(totals.consumed):
        c, e, f, d, lt = (
            totals.consumed[topic],
            totals.emitted[topic],
            totals.filtered[topic],
            dead[topic],
            totals.late[topic],
        )
        rows.append((topic, c, e, d, f, lt, c == e + d + f + lt))
    return rows


def windows_emitted(run: ShopRun, worker: Any) -> dict[str, int]:
    produced = worker.agents[0].totals.produced
    return {t: produced[run.topic(t)] for t in WINDOW_TOPICS}
