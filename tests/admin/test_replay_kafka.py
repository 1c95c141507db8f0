"""`streamsvc replay` against the real broker, cross-checked with Kafka's own
`kafka-consumer-groups.sh --reset-offsets` (ConsumerGroupCommand from the broker's jars): every scenario
flag ends at the positions Kafka's tool sets; an active group is refused with Kafka's message; a dry run
changes nothing; `--export` round-trips through `--from-file`."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.admin.support import commit, committed, kafka_consumer_groups, streamsvc_cli
from tests.support import wait_for

HOUR = 3_600_000
START = {(0): 6, (1): 4}  # committed offsets per partition before each reset (partition 2: none)


@dataclass(frozen=True)
class Seeded:
    topic: str
    base_ms: int  # record i of every partition has timestamp base_ms + i hours


@pytest.fixture
def seeded(bootstrap: str, admin: AdminClient, names) -> Seeded:  # type: ignore[no-untyped-def]
    """Partitions 0 and 1 hold 10 records each, one per hour ending ~2 h ago; partition 0's log starts at
    3 (records deleted); partition 2 is empty."""
    topic = names.topic("events", 3)
    base = int(time.time() * 1000) - 12 * HOUR
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in (0, 1):
        for i in range(10):
            producer.produce(topic, b"v%d" % i, b"k", partition=partition, timestamp=base + i * HOUR)
    assert producer.flush(30) == 0
    for fut in admin.delete_records([TopicPartition(topic, 0, 3)]).values():
        fut.result(30)
    return Seeded(topic, base)


def _groups(admin: AdminClient, names, topic: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    kafka_group, ours = names("g-kafka"), names("g-streamsvc")
    for group in (kafka_group, ours):
        commit(admin, group, {(topic, p): o for p, o in START.items()})
    return kafka_group, ours


def _iso(ms: int, zone_hours: int | None) -> str:
    """Kafka's datetime format (milliseconds required); no zone = UTC."""
    tz = UTC if zone_hours is None else timezone(timedelta(hours=zone_hours))
    text = datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    if zone_hours is not None:
        text += f"{'+' if zone_hours >= 0 else '-'}{abs(zone_hours):02d}:00"
    return text


SCENARIOS = {
    # id: (args builder, expected offsets {partition: offset})
    "to-earliest": (lambda s: ["--topic", s.topic, "--to-earliest"], {0: 3, 1: 0, 2: 0}),
    "to-latest": (lambda s: ["--topic", s.topic, "--to-latest"], {0: 10, 1: 10, 2: 0}),
    "to-current": (lambda s: ["--topic", s.topic, "--to-current"], {0: 6, 1: 4, 2: 0}),
    "to-offset-clamped-low": (lambda s: ["--topic", s.topic, "--to-offset", "1"], {0: 3, 1: 1, 2: 0}),
    "to-offset-clamped-high": (lambda s: ["--topic", s.topic, "--to-offset", "8"], {0: 8, 1: 8, 2: 0}),
    "shift-by-negative": (lambda s: ["--topic", f"{s.topic}:0,1", "--shift-by", "-5"], {0: 3, 1: 0}),
    "shift-by-positive": (lambda s: ["--topic", f"{s.topic}:0,1", "--shift-by", "+3"], {0: 9, 1: 7}),
    "all-topics-shift-by": (lambda s: ["--all-topics", "--shift-by", "100"], {0: 10, 1: 10}),
    "all-topics-to-earliest": (lambda s: ["--all-topics", "--to-earliest"], {0: 3, 1: 0}),
    "to-datetime-utc": (
        lambda s: ["--topic", s.topic, "--to-datetime", _iso(s.base_ms + 4 * HOUR + 1, None)],
        {0: 5, 1: 5, 2: 0},
    ),
    "to-datetime-zone": (
        lambda s: ["--topic", s.topic, "--to-datetime", _iso(s.base_ms + 4 * HOUR + 1, 2)],
        {0: 5, 1: 5, 2: 0},
    ),
    "by-duration": (lambda s: ["--topic", f"{s.topic}:1,2", "--by-duration", "PT6H30M"], {1: 6, 2: 0}),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_positions_equal_kafkas_tool(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, seeded: Seeded, scenario: str, tmp_path: Path, capsys
) -> None:
    build, expected = SCENARIOS[scenario]
    args = build(seeded)
    kafka_group, ours = _groups(admin, names, seeded.topic)
    done = kafka_consumer_groups(
        bootstrap, tmp_path, "--reset-offsets", "--group", kafka_group, *args, "--execute"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    code, out, err = streamsvc_cli(
        capsys, "replay", "--group", ours, *args, "--execute", "--bootstrap-server", bootstrap
    )
    assert code == 0, err
    want = {(seeded.topic, p): o for p, o in expected.items()}
    kafka_set = committed(admin, kafka_group)
    assert {tp: o for tp, o in kafka_set.items() if tp in want} == want, (done.stdout, done.stderr)
    assert committed(admin, ours) == kafka_set
    # The table lists exactly the new offsets, in Kafka's layout.
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    assert out.splitlines()[0].split() == ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
    assert {(r[1], int(r[2])): int(r[3]) for r in rows} == want
    if "clamped" in scenario:
        assert "Value will be set to" in err


def test_shift_by_without_committed_offset_is_refused_like_kafka(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, seeded: Seeded, tmp_path: Path, capsys
) -> None:
    kafka_group, ours = _groups(admin, names, seeded.topic)
    done = kafka_consumer_groups(
        bootstrap, tmp_path, "--reset-offsets", "--group", kafka_group, "--topic", seeded.topic,
        "--shift-by", "1", "--execute",
    )  # fmt: skip
    message = f"Cannot shift offset for partition {seeded.topic}-2 since there is no current committed offset"
    assert message in done.stdout + done.stderr
    code, _, err = streamsvc_cli(
        capsys, "replay", "--group", ours, "--topic", seeded.topic, "--shift-by", "1", "--execute",
        "--bootstrap-server", bootstrap,
    )  # fmt: skip
    assert code == 1 and message in err and "Traceback" not in err
    assert (
        committed(admin, ours)
        == committed(admin, kafka_group)
        == {(seeded.topic, p): o for p, o in START.items()}
    )


def test_dry_run_changes_nothing(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, seeded: Seeded, capsys
) -> None:
    _, ours = _groups(admin, names, seeded.topic)
    before = committed(admin, ours)
    for extra in ([], ["--dry-run"]):
        code, out, err = streamsvc_cli(
            capsys, "replay", "--group", ours, "--topic", seeded.topic, "--to-earliest", *extra,
            "--bootstrap-server", bootstrap,
        )  # fmt: skip
        assert code == 0
        assert ("No action will be performed" in err) == (not extra)
        assert f"{seeded.topic}" in out and " 3 " in out  # the plan shows partition 0 going to 3
        assert committed(admin, ours) == before


def test_active_group_is_refused_with_kafkas_message(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, seeded: Seeded, tmp_path: Path, capsys
) -> None:
    group = names("active")
    commit(admin, group, {(seeded.topic, p): o for p, o in START.items()})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    assigned = threading.Event()
    consumer.subscribe([seeded.topic], on_assign=lambda c, ps: assigned.set())
    try:
        wait_for(lambda: consumer.poll(0.2) is None and assigned.is_set(), 60, "the consumer to join")
        message = (
            f"Assignments can only be reset if the group '{group}' is inactive, "
            "but the current state is Stable."
        )
        done = kafka_consumer_groups(
            bootstrap, tmp_path, "--reset-offsets", "--group", group, "--topic", seeded.topic,
            "--to-earliest", "--execute",
        )  # fmt: skip
        assert message in done.stdout, done.stdout
        code, _, err = streamsvc_cli(
            capsys, "replay", "--group", group, "--topic", seeded.topic, "--to-earliest", "--execute",
            "--bootstrap-server", bootstrap,
        )  # fmt: skip
        assert code == 3
        assert f"Error: {message}" in err
        assert committed(admin, group) == {(seeded.topic, p): o for p, o in START.items()}
    finally:
        consumer.close()


def test_export_round_trips_through_from_file(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, seeded: Seeded, tmp_path: Path, capsys
) -> None:
    kafka_group, ours = _groups(admin, names, seeded.topic)
    args = ["--topic", seeded.topic, "--to-offset", "7"]
    code, csv_ours, _ = streamsvc_cli(
        capsys, "replay", "--group", ours, *args, "--export", "--bootstrap-server", bootstrap
    )
    assert code == 0
    exported = kafka_consumer_groups(
        bootstrap, tmp_path, "--reset-offsets", "--group", kafka_group, *args, "--export"
    )
    assert exported.returncode == 0
    # Same plan, same format (Kafka's order within a group is a hash map's: compare as sets).
    quoted = f'"{seeded.topic}"'  # Kafka's CSV writer quotes every text longer than 24 characters
    assert len(seeded.topic) > 24
    assert (
        set(csv_ours.split())
        == set(exported.stdout.split())
        == {f"{quoted},0,7", f"{quoted},1,7", f"{quoted},2,0"}
    )
    plan = tmp_path / "plan.csv"
    plan.write_text(csv_ours)
    assert committed(admin, ours) == {(seeded.topic, p): o for p, o in START.items()}  # export is a dry run
    code, _, err = streamsvc_cli(
        capsys,
        "replay",
        "--group",
        ours,
        "--from-file",
        str(plan),
        "--execute",
        "--bootstrap-server",
        bootstrap,
    )
    assert code == 0, err
    done = kafka_consumer_groups(
        bootstrap, tmp_path, "--reset-offsets", "--group", kafka_group, "--from-file", str(plan), "--execute"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    want = {(seeded.topic, 0): 7, (seeded.topic, 1): 7, (seeded.topic, 2): 0}
    assert committed(admin, ours) == committed(admin, kafka_group) == want


def test_multi_group_export_has_the_group_column(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, seeded: Seeded, tmp_path: Path, capsys
) -> None:
    first, second = _groups(admin, names, seeded.topic)
    code, text, _ = streamsvc_cli(
        capsys, "replay", "--group", first, "--group", second, "--topic", f"{seeded.topic}:1",
        "--to-latest", "--export", "--bootstrap-server", bootstrap,
    )  # fmt: skip
    assert code == 0
    assert set(text.split()) == {f'"{first}","{seeded.topic}",1,10', f'"{second}","{seeded.topic}",1,10'}
    plan = tmp_path / "plan.csv"
    plan.write_text(text)
    code, _, _ = streamsvc_cli(
        capsys, "replay", "--group", first, "--group", second, "--from-file", str(plan), "--execute",
        "--bootstrap-server", bootstrap,
    )  # fmt: skip
    assert code == 0
    for group in (first, second):
        assert committed(admin, group)[(seeded.topic, 1)] == 10
