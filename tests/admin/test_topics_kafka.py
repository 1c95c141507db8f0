"""`streamsvc topics plan|create|describe` against the real broker, for the revenue application."""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streamsvc.admin.app_reset import topic_overrides
from streamsvc.state.changelog import changelog_topic
from tests.admin.support import commit, streamsvc_cli
from tests.support import ROOT

APP = str(ROOT / "tests" / "admin" / "apps" / "revenue.py")
SINK = str(ROOT / "tests" / "admin" / "apps" / "revenue_sink.py")


@pytest.fixture
def env(bootstrap: str, names, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    app = names("app")
    values = {
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_TOPIC_CUSTOMERS": names.topic("customers", 2),
        "STREAMSVC_TOPIC_ORDERS": names.topic("orders", 3),
        "STREAMSVC_TOPIC_REVENUE": names("revenue"),
        "CHANGELOG": changelog_topic(app, "revenue", "revenue"),
    }
    names.track(names("revenue"), names("revenue") + ".dlq", names("orders") + ".dlq", values["CHANGELOG"])
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def _plan(capsys, *extra: str) -> dict[str, dict[str, object]]:  # type: ignore[no-untyped-def]
    code, out, err = streamsvc_cli(capsys, "topics", "plan", APP, "--sink", SINK, "--json", *extra)
    assert code == 0, err
    return {row["topic"]: row for row in orjson.loads(out)}


def test_plan_create_describe(bootstrap: str, admin: AdminClient, env: dict[str, str], capsys) -> None:  # type: ignore[no-untyped-def]
    orders, revenue, changelog = (
        env["STREAMSVC_TOPIC_ORDERS"],
        env["STREAMSVC_TOPIC_REVENUE"],
        env["CHANGELOG"],
    )
    plan = _plan(capsys, "--retention-ms", "86400000", "--dlq-retention-ms", "604800000")
    roles = {t: row["role"] for t, row in plan.items()}
    assert roles == {
        orders: "input",
        env["STREAMSVC_TOPIC_CUSTOMERS"]: "global-input",
        revenue: "output",
        orders + ".dlq": "dlq",
        changelog: "changelog",
        revenue + ".dlq": "sink-dlq",
    }
    assert plan[orders]["exists"] and plan[orders]["partitions"] == 3
    assert not plan[changelog]["exists"] and plan[changelog]["partitions"] == 3  # follows the inputs
    assert plan[changelog]["config"] == {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
    assert plan[revenue]["config"] == {"retention.ms": "86400000"}
    assert plan[orders + ".dlq"]["config"] == {"retention.ms": "604800000"}

    code, out, err = streamsvc_cli(
        capsys,
        "topics",
        "create",
        APP,
        "--sink",
        SINK,
        "--retention-ms",
        "86400000",
        "--dlq-retention-ms",
        "604800000",
    )
    assert code == 0 and "created 4 topic(s)" in out, out + err
    assert topic_overrides(admin, changelog)["cleanup.policy"] == "compact"
    assert topic_overrides(admin, revenue)["retention.ms"] == "86400000"
    plan = _plan(capsys)
    assert all(row["exists"] and not row["issues"] for row in plan.values()), plan
    assert plan[changelog]["replication"] == 1

    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(30):
        producer.produce(orders, b"{}", partition=i % 3)
    assert producer.flush(30) == 0
    group = f"{env['STREAMSVC_APP_ID']}-revenue"  # a stateful agent's own group
    commit(admin, group, {(orders, 0): 4, (orders, 1): 10})
    code, out, err = streamsvc_cli(capsys, "topics", "describe", APP, "--sink", SINK, "--json")
    assert code == 0, err
    rows = {(r["topic"], r["partition"], r["group"]): r for r in orjson.loads(out)["partitions"]}
    assert rows[(orders, 0, group)]["lag"] == 6 and rows[(orders, 0, group)]["log_end"] == 10
    assert rows[(orders, 1, group)]["lag"] == 0
    assert rows[(orders, 2, group)]["committed"] is None and rows[(orders, 2, group)]["lag"] is None
    assert rows[(revenue, 0, f"{env['STREAMSVC_APP_ID']}.revenue")]["lag"] is None
    code, out, _ = streamsvc_cli(capsys, "topics", "describe", APP)
    assert code == 0 and "CURRENT-OFFSET" in out and "LAG" in out


def test_plan_flags_a_changelog_that_is_not_compacted(
    admin: AdminClient, env: dict[str, str], names, capsys
) -> None:  # type: ignore[no-untyped-def]
    names.topic(env["CHANGELOG"].removeprefix(names.prefix + "."), 2)  # wrong policy and partitions
    plan = _plan(capsys)
    issues = plan[env["CHANGELOG"]]["issues"]
    assert issues == ["has 2 partitions, its inputs 3", "a changelog must have cleanup.policy=compact"]
    code, out, _ = streamsvc_cli(capsys, "topics", "plan", APP)
    assert code == 0 and "! a changelog must have cleanup.policy=compact" in out
