"""The outcome summary printed by `streamsvc run --until-caught-up`: per source and the invariant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamsvc.runtime.compiled import Tally
from streamsvc.runtime.summary import format_summary, outcomes
from tests.admin.support import streamsvc_cli
from tests.conftest import Names
from tests.support import produce


@dataclass
class _Agent:
    name: str
    totals: Tally


def _tally() -> Tally:
    t = Tally()
    t.consumed.update({"orders": 10, "clicks": 3})
    t.emitted.update({"orders": 5, "clicks": 2})
    t.filtered["orders"] = 1
    t.late["clicks"] = 1
    t.dead_lettered.update({("orders", "decode"): 1, ("orders", "validate"): 3})
    t.error_classes.update(
        {("orders", "decode", "JSONDecodeError"): 1, ("orders", "validate", "not_null"): 3}
    )
    return t


def test_the_summary_lists_each_source_with_reasons_and_the_invariant() -> None:
    text = format_summary([_Agent("orders-clean", _tally())])
    assert text.splitlines() == [
        "orders-clean: 2 source topics",
        "  clicks: consumed 3, emitted 2, filtered 0, dead-lettered 0, late 1",
        "  orders: consumed 10, emitted 5, filtered 1, dead-lettered 4 "
        "(decode 1: JSONDecodeError 1; validate 3: not_null 3), late 0",
        "invariant consumed = emitted + filtered + dead-lettered + late: holds",
    ]


def test_a_broken_invariant_says_so() -> None:
    t = _tally()
    t.consumed["orders"] += 1
    assert [o.balanced for o in outcomes(t)] == [True, False]
    assert format_summary([_Agent("a", t)]).endswith("late: BROKEN")


def test_run_until_caught_up_prints_the_summary(
    bootstrap: str, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    source, out = names.topic("orders", partitions=2), names("orders_clean")
    names.track(out, f"{source}.dlq")
    (tmp_path / "clean.py").write_text(
        "from streamsvc.serde import JsonSerde\n"
        "from streamsvc.topology import Topology\n"
        "from streamsvc.validation import not_null\n"
        "topology = Topology('clean')\n"
        "orders = topology.source('orders', JsonSerde(), expectations=[not_null('id')])\n"
        "orders.filter(lambda o: o['qty'] > 0).to('orders_clean', JsonSerde())\n"
    )
    records = [
        b'{"id": 1, "qty": 2}',
        b'{"id": 2, "qty": 0}',
        b'{"qty": 1}',
        b"not json",
        b'{"id": 3, "qty": 1}',
    ]
    produce(bootstrap, source, [(str(i).encode(), v) for i, v in enumerate(records)])
    for var, value in {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": names("app"),
        "STREAMSVC_METRICS_PORT": "0",
        "STREAMSVC_TOPIC_ORDERS": source,
        "STREAMSVC_TOPIC_ORDERS_CLEAN": out,
    }.items():
        monkeypatch.setenv(var, value)
    code, stdout, _ = streamsvc_cli(capsys, "run", str(tmp_path / "clean.py"), "--until-caught-up")
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0] == "clean: 1 source topic"
    assert lines[1].startswith(f"  {source}: consumed 5, emitted 2, filtered 1, dead-lettered 2 (decode 1: ")
    assert "validate 1: " in lines[1] and lines[1].endswith(", late 0")
    assert lines[2].endswith(": holds")
