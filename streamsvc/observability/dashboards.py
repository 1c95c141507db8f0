"""Grafana dashboards as code (grafana-foundation-sdk): pipeline overview, state, Iceberg.

`python -m streamsvc.observability.dashboards` writes `dashboards/*.json`, committed and shipped by the
Helm chart and docker-compose. Every panel queries `${datasource}`, a Prometheus datasource variable,
and dashboard uids are fixed so links and provisioning stay stable across regenerations.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from streamsvc.observability.alerts import OUTCOMES

DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'app=~"$app", agent=~"$agent"'
LAST_SNAPSHOT = "streamsvc_iceberg_last_snapshot_timestamp_seconds"
BY = "app, agent"


@dataclass(frozen=True)
class PanelSpec:
    """One panel: title, queries (PromQL, legend), unit and kind (timeseries, stat or table)."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    width: int = 12


def _query(expr: str, legend: str, ref: str, instant: bool) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    return q.instant() if instant else q.range()


_BUILDERS: dict[str, Callable[[], Any]] = {
    "timeseries": timeseries.Panel,
    "stat": stat.Panel,
    "table": table.Panel,
}


def _panel(spec: PanelSpec) -> Any:
    panel = _BUILDERS[spec.kind]().title(spec.title).datasource(DATASOURCE).unit(spec.unit)
    panel = panel.height(8).span(spec.width)
    if spec.description:
        panel = panel.description(spec.description)
    for i, (expr, legend) in enumerate(spec.queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i), spec.kind != "timeseries"))
    return panel


def _variables(board: gd.Dashboard) -> gd.Dashboard:
    board = board.with_variable(gd.DatasourceVariable("datasource").label("Datasource").type("prometheus"))
    for name, source in (("app", "streamsvc_agent_info"), ("agent", 'streamsvc_agent_info{app=~"$app"}')):
        board = board.with_variable(
            gd.QueryVariable(name)
            .label(name)
            .datasource(DATASOURCE)
            .query(f"label_values({source}, {name})")
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    return board


def _dashboard(
    uid: str, title: str, description: str, rows: list[tuple[str, list[PanelSpec]]]
) -> dict[str, Any]:
    board = (
        gd.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["streamsvc"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("utc")
    )
    board = _variables(board)
    for row_title, panels in rows:
        board = board.with_row(gd.Row(row_title))
        for spec in panels:
            board = board.with_panel(_panel(spec))
    doc: dict[str, Any] = _clean(json.loads(json.dumps(board.build(), cls=JSONEncoder)))
    for number, panel in enumerate(doc["panels"], start=1):
        panel["id"] = number  # stable, unique panel ids (Grafana links and `viewPanel` use them)
    return doc


def _clean(value: Any) -> Any:
    """Drop null fields, which Grafana would otherwise store as explicit nulls."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _rate(metric: str, by: str, sel: str = SEL) -> str:
    return f"sum by ({by}) (rate({metric}{{{sel}}}[$__rate_interval]))"


def _agg(metric: str, by: str, fn: str = "sum", sel: str = SEL) -> str:
    return f"{fn} by ({by}) ({metric}{{{sel}}})"


def _quantiles(metric: str, by: str, legend: str, sel: str = SEL) -> tuple[tuple[str, str], ...]:
    return tuple(
        (
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))",
            f"{legend} p{round(q * 100)}",
        )
        for q in (0.5, 0.99)
    )


def pipeline_overview() -> dict[str, Any]:
    outcomes = ("consumed", "emitted", "filtered", "dead_lettered", "late")
    unaccounted = (
        f"{_agg('streamsvc_records_consumed_total', f'{BY}, topic')} - "
        f'sum by ({BY}, topic) ({{__name__=~"{OUTCOMES}", {SEL}}})'
    )
    throughput = [
        PanelSpec(
            "Records per second by outcome",
            tuple((_rate(f"streamsvc_records_{n}_total", BY), f"{{{{agent}}}} {n}") for n in outcomes),
            "rps",
        ),
        PanelSpec(
            "Records produced per second by topic",
            ((_rate("streamsvc_records_produced_total", f"{BY}, topic"), "{{topic}}"),),
            "rps",
        ),
    ]
    lag = [
        PanelSpec(
            "Consumer lag per partition",
            (
                (
                    _agg("streamsvc_consumer_lag_records", f"{BY}, topic, partition"),
                    "{{topic}}[{{partition}}]",
                ),
            ),
            description="Committed position to the partition end (the LSO under exactly-once).",
        ),
        PanelSpec(
            "Total lag", ((_agg("streamsvc_consumer_lag_records", BY), "{{agent}}"),), kind="stat", width=6
        ),
        PanelSpec(
            "Watermark lag",
            ((_agg("streamsvc_watermark_lag_seconds", BY, "max"), "{{agent}}"),),
            "s",
            width=6,
        ),
    ]
    dead = [
        PanelSpec(
            "Dead letters per second by reason",
            (
                (
                    _rate("streamsvc_records_dead_lettered_total", f"{BY}, stage, error_class"),
                    "{{stage}} {{error_class}}",
                ),
            ),
            "rps",
        ),
        PanelSpec(
            "Dead letters by reason (total)",
            (
                (
                    _agg("streamsvc_records_dead_lettered_total", "topic, stage, error_class"),
                    "{{stage}} {{error_class}}",
                ),
            ),
            kind="table",
        ),
    ]
    transactions = [
        PanelSpec(
            "Transactions per second",
            (
                (_rate("streamsvc_transactions_committed_total", BY), "{{agent}} committed"),
                (_rate("streamsvc_transactions_aborted_total", BY), "{{agent}} aborted"),
            ),
            "ops",
            width=8,
        ),
        PanelSpec(
            "Consecutive aborts",
            ((_agg("streamsvc_consecutive_aborts", BY, "max"), "{{agent}}"),),
            kind="stat",
            width=4,
        ),
        PanelSpec(
            "Commit duration", _quantiles("streamsvc_commit_duration_seconds", BY, "{{agent}}"), "s", width=6
        ),
        PanelSpec(
            "Processing duration per batch",
            _quantiles("streamsvc_processing_duration_seconds", BY, "{{agent}}"),
            "s",
            width=6,
        ),
        PanelSpec(
            "End-to-end latency", _quantiles("streamsvc_end_to_end_latency_seconds", BY, "{{agent}}"), "s"
        ),
        PanelSpec(
            "Seconds since last commit",
            ((f"time() - {_agg('streamsvc_last_commit_timestamp_seconds', BY, 'max')}", "{{agent}}"),),
            "s",
        ),
    ]
    accounting = [
        PanelSpec(
            "Unaccounted records (consumed - emitted - filtered - dead-lettered - late)",
            ((unaccounted, "{{agent}} {{topic}}"),),
            kind="stat",
            description="Must be 0: every consumed record has exactly one outcome.",
        ),
        PanelSpec(
            "Assigned partitions and rebalances",
            (
                (_agg("streamsvc_assigned_partitions", BY), "{{agent}} assigned"),
                (
                    f"sum by ({BY}) (increase(streamsvc_rebalances_total{{{SEL}}}[$__rate_interval]))",
                    "{{agent}} rebalances",
                ),
            ),
        ),
    ]
    return _dashboard(
        "streamsvc-pipeline",
        "streamsvc / pipeline overview",
        "Throughput, lag, dead letters, transactions, latency, watermarks and the accounting invariant.",
        [
            ("Throughput", throughput),
            ("Lag", lag),
            ("Dead letters", dead),
            ("Transactions and latency", transactions),
            ("Accounting invariant", accounting),
        ],
    )


def state() -> dict[str, Any]:
    restore = [
        PanelSpec(
            "Changelog records restored per second",
            ((_rate("streamsvc_state_restored_records_total", f"{BY}, store"), "{{store}}"),),
            "rps",
        ),
        PanelSpec(
            "Restore remaining per partition",
            (
                (
                    _agg("streamsvc_state_restore_remaining_records", f"{BY}, store, partition"),
                    "{{store}}[{{partition}}]",
                ),
            ),
        ),
        PanelSpec(
            "Restore size per partition (last restore)",
            (
                (
                    _agg("streamsvc_state_restore_total_records", "store, partition"),
                    "{{store}}[{{partition}}]",
                ),
            ),
            kind="table",
        ),
    ]
    event_time = [
        PanelSpec(
            "Watermark per partition",
            (
                (
                    _agg("streamsvc_watermark_timestamp_seconds", f"{BY}, partition", "max") + " * 1000",
                    "{{partition}}",
                ),
            ),
            "dateTimeAsIso",
        ),
        PanelSpec("Watermark lag", ((_agg("streamsvc_watermark_lag_seconds", BY, "max"), "{{agent}}"),), "s"),
        PanelSpec(
            "Late records per second",
            ((_rate("streamsvc_records_late_total", f"{BY}, topic"), "{{topic}}"),),
            "rps",
        ),
    ]
    return _dashboard(
        "streamsvc-state",
        "streamsvc / state",
        "State stores: changelog restore progress and watermarks per partition.",
        [("Restore", restore), ("Event time", event_time)],
    )


def iceberg() -> dict[str, Any]:
    sel = f'{SEL}, table=~"$table"'
    commits = [
        PanelSpec(
            "Iceberg commits per second by outcome",
            ((_rate("streamsvc_iceberg_commits_total", "table, outcome", sel), "{{table}} {{outcome}}"),),
            "ops",
        ),
        PanelSpec(
            "Iceberg commit duration",
            _quantiles("streamsvc_iceberg_commit_duration_seconds", "table", "{{table}}", sel),
            "s",
        ),
        PanelSpec(
            "Rows written per second",
            ((_rate("streamsvc_iceberg_rows_written_total", "table", sel), "{{table}}"),),
            "rps",
        ),
        PanelSpec(
            "Offset lag per table",
            ((_agg("streamsvc_iceberg_offset_lag_records", "table", sel=sel), "{{table}}"),),
            description="Records in the source topic beyond the offsets the table holds.",
        ),
    ]
    tables = [
        PanelSpec(
            "Snapshots retained",
            ((_agg("streamsvc_iceberg_snapshots", "table", "max", sel), "{{table}}"),),
            width=8,
        ),
        PanelSpec(
            "Data files", ((_agg("streamsvc_iceberg_data_files", "table", "max", sel), "{{table}}"),), width=8
        ),
        PanelSpec(
            "Rows in the current snapshot",
            ((_agg("streamsvc_iceberg_table_rows", "table", "max", sel), "{{table}}"),),
            kind="stat",
            width=8,
        ),
        PanelSpec(
            "Seconds since the last snapshot",
            (
                (
                    "time() - " + _agg(LAST_SNAPSHOT, "table", "max", sel),
                    "{{table}}",
                ),
            ),
            "s",
        ),
        PanelSpec(
            "Dead letters per second by reason",
            (
                (
                    _rate("streamsvc_records_dead_lettered_total", "stage, error_class"),
                    "{{stage}} {{error_class}}",
                ),
            ),
            "rps",
        ),
    ]
    doc = _dashboard(
        "streamsvc-iceberg",
        "streamsvc / Iceberg sinks",
        "Kafka -> Iceberg sinks: commits, rows, snapshots, data files and the offset lag of each table.",
        [("Commits", commits), ("Table", tables)],
    )
    table_variable = (
        gd.QueryVariable("table")
        .label("table")
        .datasource(DATASOURCE)
        .query('label_values(streamsvc_iceberg_commits_total{app=~"$app"}, table)')
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    doc["templating"]["list"].append(_clean(json.loads(json.dumps(table_variable.build(), cls=JSONEncoder))))
    return doc


DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "pipeline-overview.json": pipeline_overview,
    "state.json": state,
    "iceberg.json": iceberg,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or [str(DASHBOARDS_DIR)])[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
