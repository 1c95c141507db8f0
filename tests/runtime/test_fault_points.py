"""Every fault point of the stream agent x every fault kind, against the real broker (issue 7).

A keyed transform and a tumbling window over 50,000 records on 4 partitions, with poison records of two
stages. The worker runs with one injected fault (`STREAMSVC_FAULTS`); a worker that exits is restarted
the way Kubernetes would, until `--until-caught-up` ends it with 0. Then the read_committed outputs,
window results and dead letters must equal the oracle exactly: no duplicate, no gap, every poison record
in the DLQ once. The full matrix runs under the `chaos` marker (CI); the default run takes one kind per
point.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from streamsvc.dlq.records import dlq_headers
from tests.support import ROOT, WorkerProcess, read_settled

TOPOLOGY = str(ROOT / "tests" / "topologies" / "keyed_windowed.py")
PARTITIONS, KEYS, RECORDS, WINDOW_MS = 4, 200, 50_000, 1_000
EXIT = {"kill": -9, "raise": 1, "fatal": 2, "abortable": 0, "retriable": 0}

CALL_KINDS = ("kill", "raise", "abortable", "retriable", "fatal")
MATRIX = {
    "before_produce": CALL_KINDS,
    "after_produce": CALL_KINDS,
    "before_flush_state": CALL_KINDS,
    "after_flush_state": CALL_KINDS,
    "before_send_offsets": CALL_KINDS,
    "after_send_offsets": ("kill", "raise", "abortable", "fatal"),
    "before_commit": CALL_KINDS,
    "after_commit": ("kill", "raise"),
}
DEFAULT_RUN = {
    ("before_produce", "abortable"),
    ("after_flush_state", "raise"),
    ("before_send_offsets", "retriable"),
    ("before_commit", "kill"),
    ("before_commit", "abortable"),
    ("after_commit", "raise"),
}


@dataclass(frozen=True)
class Expected:
    outputs: Counter[bytes]
    windows: Counter[tuple[bytes, int, int, int]]
    dead: dict[tuple[int, int], str]  # (partition, offset) -> stage


def generate(bootstrap: str, topic: str, n: int = RECORDS) -> Expected:
    """Produce `n` records (key k -> partition k % 4, event time rising by 5 ms) and return the oracle."""
    base = (int(time.time() * 1000) - 600_000) // WINDOW_MS * WINDOW_MS
    # Idempotent: retries must not reorder a partition, the oracle relies on production order = offsets.
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    outputs: Counter[bytes] = Counter()
    counts: Counter[tuple[bytes, int]] = Counter()
    dead: dict[tuple[int, int], str] = {}
    next_offset = [0] * PARTITIONS
    watermark = [0] * PARTITIONS
    for i in range(n):
        key = i % KEYS
        p, t = key % PARTITIONS, base + i * 5
        if i % 997 == 13:
            value, stage = b"{not json " + str(i).encode(), "decode"
        elif i % 1009 == 7:
            value, stage = orjson.dumps({"n": i, "t": t}), "validate"
        else:
            value, stage = orjson.dumps({"id": i, "n": i % 1000, "t": t}), ""
        if stage:
            dead[(p, next_offset[p])] = stage
        else:
            outputs[orjson.dumps({"id": i, "sq": (i % 1000) ** 2})] += 1
            counts[(f"k{key}".encode(), t // WINDOW_MS * WINDOW_MS)] += 1
            watermark[p] = t
        next_offset[p] += 1
        while True:
            try:
                producer.produce(topic, value, f"k{key}".encode(), partition=p)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    windows: Counter[tuple[bytes, int, int, int]] = Counter()
    for (key, start), c in counts.items():
        if start + WINDOW_MS <= watermark[int(key[1:]) % PARTITIONS]:  # closed by its partition's watermark
            windows[(key, start, start + WINDOW_MS, c)] += 1
    return Expected(outputs, windows, dead)


def check_exact(bootstrap: str, names, expected: Expected) -> None:  # type: ignore[no-untyped-def]
    # read_settled: right after a worker exits its last commit's markers may still trail the log end
    got = Counter(m.value() for m in read_settled(bootstrap, names("output")))
    assert got == expected.outputs, (
        f"outputs: {sum((got - expected.outputs).values())} duplicated, "
        f"{sum((expected.outputs - got).values())} missing"
    )
    windows: Counter[tuple[bytes, int, int, int]] = Counter()
    for m in read_settled(bootstrap, names("windows")):
        v = orjson.loads(m.value())
        windows[(m.key(), v["start"], v["end"], v["value"])] += 1
    extra, missing = windows - expected.windows, expected.windows - windows
    assert windows == expected.windows, f"windows: extra {sorted(extra)[:3]}, missing {sorted(missing)[:3]}"
    dead: Counter[tuple[int, int]] = Counter()
    for m in read_settled(bootstrap, names("input") + ".dlq"):
        h = dlq_headers(m.headers())
        key = (int(h["dlq.source.partition"]), int(h["dlq.source.offset"]))
        assert expected.dead.get(key) == h["dlq.stage"], (key, h)
        dead[key] += 1
    assert set(dead) == set(expected.dead), (
        f"missing dead letters: {sorted(set(expected.dead) - set(dead))[:5]}"
    )
    assert max(dead.values()) == 1, f"dead letters written twice: {[k for k, c in dead.items() if c > 1][:5]}"


def worker_env(bootstrap: str, names, app: str, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "STREAMSVC_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMSVC_APP_ID": app,
        "STREAMSVC_INSTANCE_ID": "w-0",
        "STREAMSVC_TOPIC_INPUT": names("input"),
        "STREAMSVC_TOPIC_OUTPUT": names("output"),
        "STREAMSVC_TOPIC_WINDOWS": names("windows"),
        "STREAMSVC_COMMIT_INTERVAL_MS": "100",
        "STREAMSVC_BATCH_SIZE": "500",
        **extra,
    }


def run_until_done(env: dict[str, str], log: Path, expected_first_exit: int) -> None:
    """Run the faulty worker, then restart it (as the orchestrator would) until it ends with 0."""
    first = WorkerProcess(TOPOLOGY, env, args=("--until-caught-up",), log=log)
    try:
        code = first.wait(180)
    finally:
        first.close()
    assert code == expected_first_exit, f"first run exited {code}, expected {expected_first_exit}; see {log}"
    if code != 0:
        clean = {k: v for k, v in env.items() if k != "STREAMSVC_FAULTS"}
        again = WorkerProcess(TOPOLOGY, clean, args=("--until-caught-up",), log=log)
        try:
            assert again.wait(180) == 0, f"the restarted worker did not finish cleanly; see {log}"
        finally:
            again.close()


def _cases() -> list[object]:
    cases = []
    for point, kinds in MATRIX.items():
        for kind in kinds:
            marks = [] if (point, kind) in DEFAULT_RUN else [pytest.mark.chaos]
            cases.append(pytest.param(point, kind, marks=marks, id=f"{point}-{kind}"))
    return cases


@pytest.mark.parametrize(("point", "kind"), _cases())
def test_fault_point_leaves_output_exact(
    bootstrap: str, names, tmp_path: Path, point: str, kind: str
) -> None:  # type: ignore[no-untyped-def]
    source = names.topic("input", PARTITIONS)
    names.topic("output", PARTITIONS)
    names.topic("windows", PARTITIONS)
    app = names("app")
    names.track(source + ".dlq", f"{app}.keyed-windowed.counts.changelog")
    expected = generate(bootstrap, source)
    log = tmp_path / "worker.log"
    # The 3rd hit: well inside the run (it has over a hundred batches and commits).
    env = worker_env(bootstrap, names, app, STREAMSVC_FAULTS=f"{point}:{kind}:3")
    run_until_done(env, log, EXIT[kind])
    if kind != "kill":
        assert "injected" in log.read_text(), f"the {kind} fault at {point} never fired; see {log}"
    check_exact(bootstrap, names, expected)
