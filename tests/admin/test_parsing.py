"""Pure unit tests of the operator CLI's parsers: datetimes, durations, topic arguments, reset plans,
client properties."""

from __future__ import annotations

import pytest

from streamsvc.admin.connection import librdkafka_config, parse_properties
from streamsvc.admin.replay import (
    GroupPlan,
    export_csv,
    format_table,
    parse_datetime,
    parse_duration,
    parse_plan_csv,
    parse_topic_args,
)
from streamsvc.errors import ConfigError

EPOCH_2024 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2024-01-01T00:00:00.000", EPOCH_2024),  # no zone: UTC, like Kafka
        ("2024-01-01T00:00:00", EPOCH_2024),
        ("2024-01-01T00:00:00.250Z", EPOCH_2024 + 250),
        ("2024-01-01T02:00:00.000+02:00", EPOCH_2024),
        ("2023-12-31T19:00:00.000-05:00", EPOCH_2024),
    ],
)
def test_datetimes_are_utc_unless_zoned(text: str, ms: int) -> None:
    assert parse_datetime(text) == ms


@pytest.mark.parametrize("text", ["2024-01-01", "yesterday", "2024-13-01T00:00:00"])
def test_bad_datetimes_are_user_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_datetime(text)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("PT1H", 3_600_000),
        ("P1DT30M", 86_400_000 + 1_800_000),
        ("PT0.5S", 500),
        ("pt90s", 90_000),
        ("-PT1H", -3_600_000),
        ("PT-1H30M", -1_800_000),
        ("P2D", 172_800_000),
    ],
)
def test_durations_follow_java_duration_parse(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["P", "PT", "1H", "P1H", "PT1D", "P1Y"])
def test_bad_durations_are_user_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_topic_args() -> None:
    assert parse_topic_args(["a", "b:0,2"]) == ([("b", 0), ("b", 2)], ["a"])
    with pytest.raises(ConfigError, match="Invalid topic arg 'b:0:1'"):
        parse_topic_args(["b:0:1"])
    with pytest.raises(ConfigError, match="Invalid partition 'x'"):
        parse_topic_args(["b:x"])


def test_plan_csv_formats_round_trip() -> None:
    plans = [GroupPlan("g1", "Empty", {("t", 1): 5, ("t", 0): 3}), GroupPlan("g2", "Dead", {("u", 0): 9})]
    single = export_csv(plans[:1], single_group=True)
    assert single == "t,0,3\nt,1,5\n"
    assert parse_plan_csv(single, ["g1"]) == {"g1": {("t", 0): 3, ("t", 1): 5}}
    multi = export_csv(plans, single_group=False)
    assert parse_plan_csv(multi, ["g1", "g2"]) == {"g1": plans[0].offsets, "g2": plans[1].offsets}
    # A four-column file is read as the group format even with one --group.
    assert parse_plan_csv(multi, ["g2"])["g2"] == {("u", 0): 9}
    long_name = "x" * 25
    assert export_csv([GroupPlan("g", "Empty", {(long_name, 0): 1})], True) == f'"{long_name}",0,1\n'
    with pytest.raises(ConfigError, match="line 1"):
        parse_plan_csv("t,zero,1\n", ["g1"])


def test_table_layout_matches_kafka() -> None:
    table = format_table([GroupPlan("g", "Empty", {("t", 0): 12})])
    assert table.splitlines() == [
        f"{'GROUP':<30} {'TOPIC':<30} {'PARTITION':<10} {'NEW-OFFSET':<15}",
        f"{'g':<30} {'t':<30} {'0':<10} {'12':<15}",
    ]


def test_command_config_properties() -> None:
    text = """
    # comment
    ! also a comment
    security.protocol=SASL_SSL
    sasl.mechanism : SCRAM-SHA-512
    sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\
        username="alice" password="s3=cret";
    retries=5
    """
    props = parse_properties(text)
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "SCRAM-SHA-512"
    conf = librdkafka_config(props)
    assert conf["sasl.username"] == "alice"
    assert conf["sasl.password"] == "s3=cret"
    assert "sasl.jaas.config" not in conf and "retries" not in conf
    with pytest.raises(ConfigError, match=r"ssl\.ca\.location"):
        librdkafka_config({"ssl.truststore.location": "/etc/truststore.jks"})
