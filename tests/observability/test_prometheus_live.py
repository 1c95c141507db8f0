"""A real Prometheus scrapes a running worker and an Iceberg sink: every dashboard panel query and every
alert expression is valid and the key panels return data; a poison burst and a stalled consumer fire
their alerts; the dashboards' JSON model is sound and references only metrics the service exports."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamsvc.dev.prometheus import LocalPrometheus
from streamsvc.observability.alerts import OUTCOMES, AlertParams, render, rules
from streamsvc.observability.dashboards import DASHBOARDS_DIR, render_all
from tests.observability.support import ObservedRun, get, late_records, poison_and_good, scrape
from tests.support import produce, wait_for

pytestmark = pytest.mark.ops

KEY_PANELS = {
    "Records per second by outcome",
    "Consumer lag per partition",
    "Dead letters per second by reason",
    "Transactions per second",
    "Commit duration",
    "End-to-end latency",
    "Unaccounted records (consumed - emitted - filtered - dead-lettered - late)",
    "Iceberg commits per second by outcome",
    "Rows written per second",
    "Offset lag per table",
    "Data files",
}
VARIABLES = {"$__rate_interval": "15s", "$app": ".*", "$agent": ".*", "$table": ".*"}


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr with the template variables filled in)."""
    out = []
    for name, doc in dashboards().items():
        for panel in doc["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in VARIABLES.items():
                    expr = expr.replace(var, value)
                out.append((name, panel["title"], expr))
    return out


def referenced_metrics(texts: list[str]) -> set[str]:
    names = set()
    for text in texts:
        names |= {n for n in re.findall(r"streamsvc_[a-z_]+", text) if not n.endswith("_")}
    outcomes = re.fullmatch(r"streamsvc_records_\((.*)\)_total", OUTCOMES)
    assert outcomes is not None
    names |= {f"streamsvc_records_{o}_total" for o in outcomes.group(1).split("|")}
    return names


def test_dashboards_and_rules_are_generated_and_committed() -> None:
    committed = {p.name: p.read_text() for p in DASHBOARDS_DIR.glob("*.json")}
    assert committed == render_all(), "run `python -m streamsvc.observability.dashboards`"
    rules_file = Path(__file__).resolve().parents[2] / "prometheus" / "streamsvc-rules.yml"
    assert rules_file.read_text() == render(), "run `python -m streamsvc.observability.alerts`"


def test_dashboard_json_model() -> None:
    docs = dashboards()
    assert {d["uid"] for d in docs.values()} == {"streamsvc-pipeline", "streamsvc-state", "streamsvc-iceberg"}
    for name, doc in docs.items():
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in doc["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", f"{name}: {panel['title']}"
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
                assert used <= set(variables), (
                    f"{name}: {panel['title']} uses undefined {used - set(variables)}"
                )


def test_live_prometheus(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = ObservedRun(bootstrap, names, tmp_path)
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(render(AlertParams.fast()))
    try:
        run.wait_ready()
        t0 = int(time.time() * 1000)
        records, exp = poison_and_good(t0, 0, 300)
        produce(bootstrap, run.input, records)
        run.wait_consumed(exp.consumed)
        produce(bootstrap, run.input, late_records(t0, 3))
        run.wait_consumed(exp.consumed + 3)
        run.feed_sink()
        targets = {"worker": [run.worker_url[7:]], "sink": [run.sink_url[7:]]}
        with LocalPrometheus(targets, [rules_file]) as prom:
            wait_for(prom.targets_up, 60, "both targets scraped")
            wait_for(lambda: prom.query("streamsvc_records_consumed_total"), 60, "first samples")

            # The exported metric names cover everything the dashboards and rules reference.
            live = {n for n, _, _ in scrape(run.worker_url)} | {n for n, _, _ in scrape(run.sink_url)}
            live |= {re.sub(r"_(bucket|count|sum)$", "", n) for n in live}
            exprs = [q for _, _, q in panel_queries()]
            alert_exprs = [r["expr"] for r in rules(AlertParams.fast())["groups"][0]["rules"]]
            missing = referenced_metrics(exprs + alert_exprs) - live
            assert not missing, f"dashboards/rules reference metrics nobody exports: {sorted(missing)}"

            # Every alert expression is valid PromQL for Prometheus (raises otherwise).
            for expr in alert_exprs:
                prom.query(expr)

            # Every panel query is valid; the key panels return data once a few scrapes are in.
            def key_panels_have_data() -> list[str] | None:
                empty = []
                for _, title, expr in panel_queries():
                    result = prom.query(expr)
                    if title in KEY_PANELS and not result:
                        empty.append(title)
                return None if empty else ["ok"]

            try:
                wait_for(key_panels_have_data, 60, "data in every key panel")
            except AssertionError:
                empty = [t for _, t, e in panel_queries() if t in KEY_PANELS and not prom.query(e)]
                raise AssertionError(f"key panels without data: {sorted(set(empty))}") from None
            unaccounted = next(q for _, t, q in panel_queries() if t.startswith("Unaccounted"))
            values = [float(r["value"][1]) for r in prom.query(unaccounted)]
            assert values and all(v == 0 for v in values), f"invariant panel shows {values}"

            # Faults: quiet before, firing after.
            assert not prom.firing("StreamsvcDeadLetterRate")
            assert not prom.firing("StreamsvcPollLoopStalled")
            burst = iter(range(10_000))

            def poison_until_firing() -> list[dict[str, Any]]:
                produce(
                    bootstrap, run.input, [(b"p", b"{poison " + str(next(burst)).encode()) for _ in range(20)]
                )
                return prom.firing("StreamsvcDeadLetterRate")

            wait_for(poison_until_firing, 90, "DeadLetterRate alert firing", interval=0.5)
            firing = prom.firing("StreamsvcDeadLetterRate")[0]
            assert firing["labels"]["topic"] == run.input and firing["labels"]["app"] == run.app

            run.stall_file.touch()
            produce(bootstrap, run.input, [(b"s", orjson.dumps({"id": 1, "t": t0, "stall": True}))])
            wait_for(lambda: prom.firing("StreamsvcPollLoopStalled"), 90, "PollLoopStalled alert firing")
            assert get(f"{run.worker_url}/healthz")[0] == 200  # liveness allows 60 s by default
            run.stall_file.unlink()
            wait_for(lambda: not prom.firing("StreamsvcPollLoopStalled"), 90, "PollLoopStalled resolved")
    finally:
        run.close()
