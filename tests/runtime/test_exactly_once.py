"""Exactly-once under SIGKILL and under a zombie, against the real broker (issue #2 acceptance)."""

from __future__ import annotations

import random
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import orjson

from streamsvc.runtime.topics import admin_client, end_offsets, read_all
from tests.support import ROOT, WorkerProcess, committed_offsets, produce, wait_for

TOPOLOGY = str(ROOT / "tests" / "topologies" / "keyed_transform.py")
PARTITIONS = 4


def _records(start: int, stop: int) -> list[tuple[bytes, bytes]]:
    return [(str(i % 1000).encode(), orjson.dumps({"id": i, "n": i % 5000})) for i in range(start, stop)]


def _expected(n: int) -> Counter[bytes]:
    return Counter(orjson.dumps({"id": i, "sq": (i % 5000) ** 2, "tag": f"k{i % 97}"}) for i in range(n))


def _env(bootstrap: str, names, app: str, instance: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_INSTANCE_ID": instance,
        "STREAMSVC_TOPIC_INPUT": names("input"),
        "STREAMSVC_TOPIC_OUTPUT": names("output"),
        "STREAMSVC_COMMIT_INTERVAL_MS": "100",
        "STREAMSVC_BATCH_SIZE": "500",
    }


def _progress(bootstrap: str, group: str, topic: str) -> int:
    return sum(max(o, 0) for o in committed_offsets(bootstrap, group, topic, PARTITIONS).values())


def test_sigkill_at_random_moments_yields_exact_output(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    total, chunks, kills = 100_000, 6, 0
    source = names.topic("input", PARTITIONS)
    names.topic("output", PARTITIONS)
    app = names("app")
    env = _env(bootstrap, names, app, "crash-0")
    rng = random.Random(20261125)
    log = tmp_path / "worker.log"
    bounds = [total * i // chunks for i in range(chunks + 1)]
    for lo, hi in pairwise(bounds):
        produce(bootstrap, source, _records(lo, hi))
        worker = WorkerProcess(TOPOLOGY, env, log=log)
        try:
            before = _progress(bootstrap, app, source)
            # Kill only once this incarnation has committed something, then at a random moment after.
            wait_for(lambda b=before: _progress(bootstrap, app, source) > b, 90, "worker progress")
            time.sleep(rng.uniform(0.0, 0.6))  # the random kill moment itself, not a wait for a condition
            assert worker.proc.poll() is None, f"worker died on its own; see {log}"
            worker.kill()
            kills += 1
        finally:
            worker.close()
    assert kills >= 5

    final = WorkerProcess(TOPOLOGY, env, args=("--until-caught-up",), log=log)
    try:
        assert final.wait(180) == 0, f"final worker failed; see {log}"
    finally:
        final.close()

    offsets = committed_offsets(bootstrap, app, source, PARTITIONS)
    assert offsets == end_offsets(admin_client(bootstrap), source), (
        "committed offsets did not reach the end of the input"
    )
    got = Counter(m.value() for m in read_all(bootstrap, names("output")))
    expected = _expected(total)
    assert got == expected, (
        f"duplicates: {sum((got - expected).values())}, missing: {sum((expected - got).values())}"
    )


def test_zombie_with_same_transactional_id_is_fenced(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    total = 40_000
    source = names.topic("input", PARTITIONS)
    names.topic("output", PARTITIONS)
    app = names("app")
    env = _env(bootstrap, names, app, "zombie-0")
    produce(bootstrap, source, _records(0, 10_000))
    first = WorkerProcess(TOPOLOGY, env, log=tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: _progress(bootstrap, app, source) > 0, 90, "first instance progress")
        # The same instance id means the same transactional.id (and group.instance.id): a zombie pair.
        second = WorkerProcess(TOPOLOGY, env, log=tmp_path / "second.log")
        produced = 10_000
        while first.proc.poll() is None and produced < total:
            produce(bootstrap, source, _records(produced, produced + 2_000))
            produced += 2_000
        code = first.wait(120)
        assert code == 2, f"the fenced instance must exit non-zero (2), got {code}; see {tmp_path}"
        assert second.proc.poll() is None, f"the new instance must keep running; see {tmp_path}"
        produce(bootstrap, source, _records(produced, total))
        second.terminate()
        assert second.wait(60) == 0
    finally:
        first.close()
        if second is not None:
            second.close()

    final = WorkerProcess(TOPOLOGY, env, args=("--until-caught-up",), log=tmp_path / "final.log")
    try:
        assert final.wait(180) == 0
    finally:
        final.close()
    got = Counter(m.value() for m in read_all(bootstrap, names("output")))
    expected = _expected(total)
    assert got == expected, (
        f"duplicates: {sum((got - expected).values())}, missing: {sum((expected - got).values())}"
    )


def test_sigterm_commits_open_transaction_and_exits_zero(bootstrap: str, names, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = names.topic("input", PARTITIONS)
    output = names.topic("output", PARTITIONS)
    app = names("app")
    produce(bootstrap, source, _records(0, 20_000))
    # A long commit interval and input still flowing make a transaction open when SIGTERM arrives.
    env = {**_env(bootstrap, names, app, "term-0"), "STREAMSVC_COMMIT_INTERVAL_MS": "5000"}
    worker = WorkerProcess(TOPOLOGY, env, log=tmp_path / "worker.log")
    try:
        wait_for(lambda: _progress(bootstrap, app, source) > 0, 90, "worker progress")
        produce(bootstrap, source, _records(20_000, 60_000))
        worker.terminate()
        assert worker.wait(30) == 0, f"SIGTERM must drain and exit 0; see {tmp_path}"
    finally:
        worker.close()
    admin = admin_client(bootstrap)
    # An open (or hanging) transaction would hold the last stable offset below the high watermark.
    assert end_offsets(admin, output, read_committed=True) == end_offsets(admin, output, read_committed=False)
    committed = committed_offsets(bootstrap, app, source, PARTITIONS)
    outputs = read_all(bootstrap, output)
    assert len(outputs) == sum(committed.values()), "outputs must match the committed input offsets 1:1"
    assert outputs, "the drained transaction must have committed output"
