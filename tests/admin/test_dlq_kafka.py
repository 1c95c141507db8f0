"""`streamsvc dlq inspect|redrive` against the real broker: poison records of every stage are inspected,
the topology is fixed, the records re-driven; the outputs then hold them exactly once, and a second
re-drive changes nothing."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streamsvc.config import Settings
from streamsvc.dlq.records import dlq_headers
from streamsvc.runtime.topics import end_offsets, read_all
from streamsvc.runtime.worker import Worker
from streamsvc.topology.loader import load_topology
from tests.admin.apps.poison import order
from tests.admin.support import streamsvc_cli
from tests.support import ROOT

POISON = str(ROOT / "tests" / "admin" / "apps" / "poison.py")


def _run(settings: Settings, version: str) -> Worker:
    worker = Worker([load_topology(f"{POISON}:{version}")], settings, until_caught_up=True)
    worker.start()
    assert worker.join(120) == 0
    assert worker.agents[0].totals.balanced()
    return worker


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], headers: bool = False) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:
        producer.produce(topic, value, key, headers=[("trace-id", key)] if headers else None)
    assert producer.flush(30) == 0


def _totals(bootstrap: str, topic: str) -> Counter[int]:
    return Counter(orjson.loads(m.value())["id"] for m in read_all(bootstrap, topic))


def test_poison_records_of_every_stage_are_inspected_fixed_and_redriven_once(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, capsys, tmp_path: Path
) -> None:
    events, ticks = names.topic("events"), names.topic("ticks")
    totals, counts = names("totals"), names("counts")
    app = names("app")
    names.track(totals, counts, f"{app}.poison.ticks.changelog")
    settings = Settings(
        app_id=app,
        bootstrap_servers=bootstrap,
        instance_id="p-0",
        static_membership=False,
        topics={"events": events, "ticks": ticks, "totals": totals, "counts": counts},
        state_dir=str(tmp_path),
    )
    good = [(str(i).encode(), order(i)) for i in range(20)]
    poison = [
        (b"900", b"id=900;qty=2"),  # decode: the legacy format
        (b"901", order(901, qty=500)),  # validate: qty out of range
        (b"902", order(902, price=None)),  # process: no price
    ]
    _produce(bootstrap, events, good[:10] + poison + good[10:], headers=True)
    base = (int(time.time() * 1000) - 600_000) // 1000 * 1000
    tick = lambda key, t: (key, orjson.dumps({"t": t}))  # noqa: E731
    _produce(
        bootstrap, ticks, [tick(b"k", base + i * 100) for i in range(50)] + [tick(b"late", base - 10_000)]
    )

    _run(settings, "v1")
    assert _totals(bootstrap, totals) == Counter(range(20))

    # Inspect: every stage, with its error class, source coordinates and the original bytes.
    code, out, err = streamsvc_cli(
        capsys, "dlq", "inspect", events + ".dlq", "--json", "--bootstrap-server", bootstrap
    )
    assert code == 0, err
    found = orjson.loads(out)
    assert found["total"] == 3
    assert found["by_stage"] == {"decode": 1, "validate": 1, "process": 1}
    assert set(found["by_error_class"]) == {
        "streamsvc.errors.MalformedPayloadError",
        "streamsvc.errors.ExpectationFailed",
        "KeyError",
    }
    assert found["by_source_partition"] == [{"topic": events, "partition": 0, "count": 3}]
    decode = next(s for s in found["samples"] if s["headers"]["dlq.stage"] == "decode")
    assert decode["value"] == "id=900;qty=2" and decode["key"] == "900"
    assert decode["headers"]["trace-id"] == "900" and decode["headers"]["dlq.source.offset"] == "10"
    code, out, _ = streamsvc_cli(capsys, "dlq", "inspect", ticks + ".dlq", "--bootstrap-server", bootstrap)
    assert code == 0 and "late" in out and "LateRecordError" in out and "SOURCE-TOPIC:PARTITION" in out

    # A dry run re-drives nothing.
    before = {t: end_offsets(admin, t) for t in (events, ticks)}
    code, out, err = streamsvc_cli(capsys, "dlq", "redrive", events + ".dlq", "--bootstrap-server", bootstrap)
    assert code == 0 and "3 record(s) to re-drive (dry run)" in out, out + err
    assert {t: end_offsets(admin, t) for t in (events, ticks)} == before

    # Fix the topology, re-drive, run the fix: each poison record lands in the outputs exactly once.
    for dlq in (events + ".dlq", ticks + ".dlq"):
        code, out, err = streamsvc_cli(
            capsys, "dlq", "redrive", dlq, "--execute", "--bootstrap-server", bootstrap
        )
        assert code == 0 and "re-driven from" in out and "0 already re-driven" in out, out + err
    redriven = [m for m in read_all(bootstrap, events) if m.offset() >= before[events][0]]
    assert sorted(m.key() for m in redriven) == [b"900", b"901", b"902"]
    for m in redriven:
        headers = dict(m.headers() or [])
        assert headers["trace-id"] == m.key()  # original headers kept, dlq.* ones dropped
        assert headers["dlq.redriven.from"].decode().startswith(f"{events}.dlq:0:")
        assert not dlq_headers([(k, v) for k, v in headers.items() if k != "dlq.redriven.from"])
    _produce(bootstrap, ticks, [tick(b"closer", base + 3_700_000)])  # closes the late tick's window
    _run(settings, "v2")
    assert _totals(bootstrap, totals) == Counter([*range(20), 900, 901, 902])
    late = [orjson.loads(m.value()) for m in read_all(bootstrap, counts) if m.key() == b"late"]
    assert late == [{"start": base - 10_000, "end": base - 9_000, "value": 1}]

    # A second re-drive changes nothing.
    after = {t: end_offsets(admin, t) for t in (events, ticks)}
    for dlq, n in ((events + ".dlq", 3), (ticks + ".dlq", 1)):
        code, out, _ = streamsvc_cli(
            capsys, "dlq", "redrive", dlq, "--execute", "--bootstrap-server", bootstrap
        )
        assert code == 0 and f"0 record(s) re-driven from {dlq}; {n} already re-driven" in out
    assert {t: end_offsets(admin, t) for t in (events, ticks)} == after
    _run(settings, "v2")
    assert _totals(bootstrap, totals) == Counter([*range(20), 900, 901, 902])


def test_redrive_selection_takes_only_the_chosen_records(  # type: ignore[no-untyped-def]
    bootstrap: str, admin: AdminClient, names, capsys
) -> None:
    events = names.topic("events")
    app = names("app")
    names.track(names("totals"), names("counts"))
    settings = Settings(
        app_id=app,
        bootstrap_servers=bootstrap,
        instance_id="p-1",
        static_membership=False,
        topics={
            "events": events,
            "ticks": names.topic("ticks"),
            "totals": names("totals"),
            "counts": names("counts"),
        },
    )
    _produce(bootstrap, events, [(b"1", b"id=1;qty=1"), (b"2", order(2, qty=500)), (b"3", b"id=3;qty=1")])
    _run(settings, "v1")
    dlq = events + ".dlq"
    code, out, _ = streamsvc_cli(
        capsys,
        "dlq",
        "redrive",
        dlq,
        "--stage",
        "decode",
        "--to-offset",
        "1",
        "--execute",
        "--bootstrap-server",
        bootstrap,
    )
    assert code == 0 and "1 record(s) re-driven" in out
    code, out, _ = streamsvc_cli(
        capsys,
        "dlq",
        "redrive",
        dlq,
        "--error-class",
        "ExpectationFailed",
        "--execute",
        "--bootstrap-server",
        bootstrap,
    )
    assert code == 0 and "1 record(s) re-driven" in out
    keys = [m.key() for m in read_all(bootstrap, events)]
    assert keys == [b"1", b"2", b"3", b"1", b"2"]
    code, out, _ = streamsvc_cli(capsys, "dlq", "redrive", dlq, "--execute", "--bootstrap-server", bootstrap)
    assert code == 0 and "1 record(s) re-driven" in out and "2 already re-driven" in out
    code, _, err = streamsvc_cli(capsys, "dlq", "inspect", names("missing"), "--bootstrap-server", bootstrap)
    assert code == 1 and "does not exist" in err and "Traceback" not in err


@pytest.mark.parametrize("bad", [["--header", "novalue"], ["--match", "("]])
def test_bad_selections_are_user_errors(capsys, bad: list[str]) -> None:  # type: ignore[no-untyped-def]
    code, _, err = streamsvc_cli(capsys, "dlq", "inspect", "x.dlq", *bad, "--bootstrap-server", "127.0.0.1:1")
    assert code == 1 and "Traceback" not in err
