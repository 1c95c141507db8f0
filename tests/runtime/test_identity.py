"""Issue #7, identities: transactional ids, instance ids and static membership (items 9, 11, 12).

Against the real broker through `streamsvc run` child processes (or `Worker` in-process): a new owner
waits out a dead pod's pending offsets, identities never collide by accident, a fenced zombie exits 2,
and a static member never works from a stale cached assignment. Outputs are read back read_committed
and must equal the oracle exactly.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import NewPartitions

from streamsvc.config import Settings
from streamsvc.runtime.topics import admin_client, end_offsets
from streamsvc.runtime.worker import Worker
from streamsvc.serde import BytesSerde
from streamsvc.topology import Topology
from tests.runtime.orphan_transaction import ORPHAN_VALUE
from tests.support import (
    ROOT,
    ChildProcess,
    WorkerProcess,
    committed_offsets,
    produce,
    read_settled,
    wait_for,
)

TOPOLOGY = str(ROOT / "tests" / "topologies" / "keyed_transform.py")
PARTITIONS = 4


def _records(start: int, stop: int) -> list[tuple[bytes, bytes]]:
    return [(str(i % 1000).encode(), orjson.dumps({"id": i, "n": i % 5000})) for i in range(start, stop)]


def _expected(start: int, stop: int) -> Counter[bytes]:
    return Counter(
        orjson.dumps({"id": i, "sq": (i % 5000) ** 2, "tag": f"k{i % 97}"}) for i in range(start, stop)
    )


def _env(bootstrap: str, app: str, source: str, output: str, instance: str | None) -> dict[str, str]:
    env = {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_TOPIC_INPUT": source,
        "STREAMSVC_TOPIC_OUTPUT": output,
        "STREAMSVC_COMMIT_INTERVAL_MS": "100",
        "STREAMSVC_BATCH_SIZE": "500",
    }
    if instance is not None:
        env["STREAMSVC_INSTANCE_ID"] = instance
    return env


def _outputs(bootstrap: str, topic: str) -> Counter[bytes | None]:
    return Counter(m.value() for m in read_settled(bootstrap, topic))


def _diff(got: Counter[Any], expected: Counter[Any]) -> str:
    return f"duplicates: {sum((got - expected).values())}, missing: {sum((expected - got).values())}"


def _progress(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> int:
    return sum(max(o, 0) for o in committed_offsets(bootstrap, group, topic, partitions).values())


def _members(bootstrap: str, group: str) -> list[Any]:
    """Members of `group` that hold at least one partition (none while the group cannot be described)."""
    admin = admin_client(bootstrap)  # held: a client collected mid-request never completes it
    future = admin.describe_consumer_groups([group], request_timeout=10)[group]
    try:
        description = future.result(15)
    except (KafkaException, TimeoutError):
        return []
    return [m for m in description.members if m.assignment.topic_partitions]


# ---- item 9: a new owner waits out a dead pod's transaction that holds the offsets ---------------


@pytest.mark.chaos
def test_new_owner_waits_for_a_dead_pods_pending_offsets_instead_of_crashing(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path
) -> None:
    """~60 s: the orphaned transaction must outlive the 30 s the old code waited."""
    source = names.topic("input", PARTITIONS)
    output = names.topic("output", PARTITIONS)
    app = names("app")
    names.track(source + ".dlq")
    total = 4_000
    produce(bootstrap, source, _records(0, total))
    # The dead pod: another transactional id, its transaction open with the group's offsets in it.
    orphan_log = tmp_path / "orphan.log"
    orphan = ChildProcess(
        ["tests.runtime.orphan_transaction", bootstrap, app, source, output, f"{app}.dead-pod", "45000"],
        {},
        log=orphan_log,
    )
    try:
        wait_for(lambda: b"READY" in orphan_log.read_bytes(), 60, "the orphan's open transaction")
        orphan.kill()
    finally:
        orphan.close()
    log = tmp_path / "worker.log"
    worker = WorkerProcess(
        TOPOLOGY, _env(bootstrap, app, source, output, "new-owner-0"), ("--until-caught-up",), log
    )
    try:
        assert worker.wait(180) == 0, f"the new owner must wait for the pending offsets, not crash; see {log}"
    finally:
        worker.close()
    assert b"waiting_for_pending_transaction" in log.read_bytes()
    assert committed_offsets(bootstrap, app, source, PARTITIONS) == end_offsets(
        admin_client(bootstrap), source
    )
    got = _outputs(bootstrap, output)
    assert ORPHAN_VALUE not in got, "the dead pod's transaction must have been aborted"
    assert got == _expected(0, total), _diff(got, _expected(0, total))


# ---- item 11: identities never collide by accident; a fenced zombie exits 2 ----------------------


def _passthrough(name: str) -> Topology:
    topology = Topology(name)
    topology.source(f"in_{name}", value_serde=BytesSerde()).to(f"out_{name}", value_serde=BytesSerde())
    return topology


def test_explicit_transactional_id_with_two_topologies_in_one_worker(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    topics = {}
    for name in ("a", "b"):
        topics[f"in_{name}"] = names.topic(f"in_{name}", 2)
        topics[f"out_{name}"] = names(f"out_{name}")
        names.track(topics[f"out_{name}"], topics[f"in_{name}"] + ".dlq")
    values = {name: [f"{name}{i}".encode() for i in range(3_000)] for name in ("a", "b")}
    for name, vs in values.items():
        produce(bootstrap, topics[f"in_{name}"], [(v, v) for v in vs])
    app = names("app")
    settings = Settings(
        app_id=app,
        bootstrap_servers=bootstrap,
        instance_id="tid-0",
        transactional_id=f"{app}.explicit",
        commit_interval_ms=50,
        batch_size=200,
        topics=topics,
    )
    # Long-running, not --until-caught-up: an agent that finished first would leave its static member
    # in the shared group, and the other's join would wait out the session timeout.
    worker = Worker([_passthrough("a"), _passthrough("b")], settings)
    worker.start()
    try:
        wait_for(
            lambda: (
                not worker.alive
                or all(_progress(bootstrap, app, topics[f"in_{n}"], 2) == len(vs) for n, vs in values.items())
            ),
            90,
            "both agents' input committed",
        )
    finally:
        worker.stop()
    assert worker.join(60) == 0, "two agents under one explicit transactional id must not fence each other"
    for name, vs in values.items():
        assert _outputs(bootstrap, topics[f"out_{name}"]) == Counter(vs)


def test_two_workers_on_one_host_without_instance_id_do_not_fence_each_other(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~25 s."""
    monkeypatch.delenv("POD_NAME", raising=False)
    monkeypatch.delenv("STREAMSVC_INSTANCE_ID", raising=False)
    source = names.topic("input", PARTITIONS)
    output = names.topic("output", PARTITIONS)
    app = names("app")
    names.track(source + ".dlq")
    env = _env(bootstrap, app, source, output, instance=None)
    produce(bootstrap, source, _records(0, 10_000))
    first = WorkerProcess(TOPOLOGY, env, log=tmp_path / "first.log")
    second = WorkerProcess(TOPOLOGY, env, log=tmp_path / "second.log")
    total = 10_000
    try:
        wait_for(lambda: len(_members(bootstrap, app)) == 2, 90, "both workers holding partitions")
        members = _members(bootstrap, app)
        assert all(m.group_instance_id is None for m in members), (
            "an unstable instance id (host-pid) must not use static membership"
        )
        for lo in range(total, 30_000, 5_000):
            produce(bootstrap, source, _records(lo, lo + 5_000))
            total = lo + 5_000
            assert first.proc.poll() is None and second.proc.poll() is None, f"a worker died; see {tmp_path}"
        wait_for(lambda: _progress(bootstrap, app, source) == total, 120, "all input committed")
        wait_for(lambda: len(_members(bootstrap, app)) == 2, 30, "both workers still sharing the partitions")
        first.terminate()
        second.terminate()
        assert first.wait(60) == 0 and second.wait(60) == 0, f"see {tmp_path}"
    finally:
        first.close()
        second.close()
    got = _outputs(bootstrap, output)
    assert got == _expected(0, total), _diff(got, _expected(0, total))


@pytest.mark.parametrize(
    "zombie", [pytest.param("open_transaction", marks=pytest.mark.chaos), "full_produce_queue"]
)
def test_fenced_zombie_exits_2(bootstrap: str, names, tmp_path: Path, zombie: str) -> None:  # type: ignore[no-untyped-def]
    """~20 s. The zombie is fenced with a large transaction open (the fence then also surfaces in
    the producer flush on close), or while it waits for room in a small produce queue."""
    source = names.topic("input", PARTITIONS)
    output = names.topic("output", PARTITIONS)
    app = names("app")
    names.track(source + ".dlq")
    env = _env(bootstrap, app, source, output, "zombie-0")
    if zombie == "open_transaction":
        env["STREAMSVC_COMMIT_INTERVAL_MS"] = "3000"
    else:
        config = tmp_path / "small-queue.toml"
        config.write_text('[producer]\n"queue.buffering.max.messages" = 200\n')
        env["STREAMSVC_CONFIG"] = str(config)
    total = 60_000
    produce(bootstrap, source, _records(0, 20_000))
    first = WorkerProcess(TOPOLOGY, env, log=tmp_path / "zombie.log")
    second = None
    try:
        wait_for(lambda: _progress(bootstrap, app, source) > 0, 90, "the first instance's progress")
        produce(bootstrap, source, _records(20_000, total))  # keeps the zombie busy while it is fenced
        # The same instance id: the same transactional.id and group.instance.id, a zombie pair.
        second = WorkerProcess(TOPOLOGY, env, log=tmp_path / "new.log")
        code = first.wait(120)
        assert code == 2, f"a fenced zombie must exit 2, got {code}; see {tmp_path / 'zombie.log'}"
        assert second.proc.poll() is None, "the new instance must keep running"
        wait_for(lambda: _progress(bootstrap, app, source) == total, 120, "all input committed")
        second.terminate()
        assert second.wait(60) == 0
    finally:
        first.close()
        if second is not None:
            second.close()
    got = _outputs(bootstrap, output)
    assert got == _expected(0, total), _diff(got, _expected(0, total))


# ---- item 12: a static member never works from a stale cached assignment -------------------------


def test_static_member_restarted_on_another_source_topic_reads_only_the_new_one(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path
) -> None:
    old_source, new_source = names.topic("old_input", PARTITIONS), names.topic("new_input", PARTITIONS)
    old_output, new_output = names.topic("old_output", PARTITIONS), names.topic("new_output", PARTITIONS)
    names.track(old_source + ".dlq", new_source + ".dlq")
    app = names("app")
    produce(bootstrap, old_source, _records(0, 400))
    produce(bootstrap, new_source, _records(10_000, 11_000))
    log = tmp_path / "worker.log"
    first = WorkerProcess(
        TOPOLOGY, _env(bootstrap, app, old_source, old_output, "static-0"), ("--until-caught-up",), log
    )
    try:
        assert first.wait(120) == 0
    finally:
        first.close()
    # At once (well within the session timeout), same ids, another source topic.
    second = WorkerProcess(
        TOPOLOGY, _env(bootstrap, app, new_source, new_output, "static-0"), ("--until-caught-up",), log
    )
    try:
        assert second.wait(120) == 0, f"see {log}"
    finally:
        second.close()
    assert committed_offsets(bootstrap, app, new_source, PARTITIONS) == end_offsets(
        admin_client(bootstrap), new_source
    )
    got = _outputs(bootstrap, new_output)
    assert got == _expected(10_000, 11_000), _diff(got, _expected(10_000, 11_000))
    assert _outputs(bootstrap, old_output) == _expected(0, 400)


def test_static_member_restarted_after_partitions_were_added_reads_them_all(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path
) -> None:
    source = names.topic("input", 1)
    output = names.topic("output", 1)
    names.track(source + ".dlq")
    app = names("app")
    env = _env(bootstrap, app, source, output, "static-0")
    produce(bootstrap, source, _records(0, 200))
    log = tmp_path / "worker.log"
    first = WorkerProcess(TOPOLOGY, env, ("--until-caught-up",), log)
    try:
        assert first.wait(120) == 0
    finally:
        first.close()
    admin = admin_client(bootstrap)
    for fut in admin.create_partitions([NewPartitions(source, PARTITIONS)]).values():
        fut.result(30)
    wait_for(lambda: len(end_offsets(admin, source)) == PARTITIONS, 30, "the new partitions")
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, (key, value) in enumerate(_records(200, 1_000)):
        producer.produce(source, value, key, partition=i % PARTITIONS)
    assert producer.flush(30) == 0
    second = WorkerProcess(TOPOLOGY, env, ("--until-caught-up",), log)
    try:
        assert second.wait(120) == 0, f"see {log}"
    finally:
        second.close()
    ends = end_offsets(admin, source)
    assert committed_offsets(bootstrap, app, source, PARTITIONS) == ends, "every partition must be consumed"
    got = _outputs(bootstrap, output)
    assert got == _expected(0, 1_000), _diff(got, _expected(0, 1_000))


def test_instance_ids_without_configuration_differ_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default instance id is `<host>-<pid>`, and only a configured or POD_NAME id is stable."""
    monkeypatch.delenv("POD_NAME", raising=False)
    settings = Settings()
    assert settings.effective_instance_id.endswith(f"-{os.getpid()}")
    assert not settings.effective_static_membership
    assert Settings(instance_id="w-0").effective_static_membership
    monkeypatch.setenv("POD_NAME", "worker-3")
    assert Settings().effective_instance_id == "worker-3" and Settings().effective_static_membership
