"""Shared test helpers: real-broker plumbing with deadlines instead of sleeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from streamsvc.eos.errors import COORDINATOR_MOVING

ROOT = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `condition` until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]], **extra: Any
) -> int:
    # Idempotent, so that retries never reorder a partition (oracles rely on production order).
    conf = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 10,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
    }
    producer = Producer(conf)
    n = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, **extra)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
    assert producer.flush(60) == 0, "records left undelivered"
    return n


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (retrying while a fresh broker still loads its coordinators)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
                return {tp.partition: tp.offset for tp in tps}
            except KafkaException as exc:
                err = exc.args[0]
                if not (err.retriable() or err.code() in COORDINATOR_MOVING) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close()


class ChildProcess:
    """A `python -m <module> ...` child, so tests can SIGKILL and SIGTERM it like Kubernetes does."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path | None = None) -> None:
        self.log_path = log
        self._log = log.open("ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *argv],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=self._log,
            stderr=self._log,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        if hasattr(self._log, "close"):
            self._log.close()


class WorkerProcess(ChildProcess):
    """`streamsvc run <topology>` in a child process."""

    def __init__(
        self, topology: str, env: dict[str, str], args: tuple[str, ...] = (), log: Path | None = None
    ) -> None:
        super().__init__(["streamsvc.cli.main", "run", topology, *args], env, log)


def finish(worker: Any, timeout: float, what: str = "worker") -> int:
    """`worker.start()` (a `Worker`, `until_caught_up`), then its exit code once every agent finished.
    A worker still running after `timeout` seconds (a livelock, a hang) is stopped and the test fails."""
    worker.start()
    code = worker.join(timeout)
    if worker.alive:
        worker.stop()
        worker.join(60)
        raise AssertionError(f"{what} did not catch up and exit within {timeout:.0f}s")
    return int(code)


def header_map(msg: Any) -> dict[str, str]:
    """A consumed record's headers as text (the last value wins for a repeated name)."""
    return {
        k: v.decode(errors="replace") if isinstance(v, bytes) else (v or "") for k, v in msg.headers() or []
    }


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_settled(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every committed record of `topic` once no transaction is open on it. A transaction's commit
    returns before its markers reach the partitions, so right after a worker exits the last stable
    offset may still trail the end of the log; reading then would miss committed records."""
    from streamsvc.runtime.topics import admin_client, end_offsets, read_all

    admin = admin_client(bootstrap)
    wait_for(
        lambda: (
            end_offsets(admin, topic, read_committed=True) == end_offsets(admin, topic, read_committed=False)
        ),
        timeout,
        f"no open transaction on {topic}",
    )
    return read_all(bootstrap, topic)
