"""Worker "pods" for the cluster tests: restarted when they exit, the way Kubernetes restarts a
StatefulSet pod (same name, so the same instance id and transactional.id), with every restart recorded
so a test can report whether the worker needed one."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamsvc.runtime.topics import end_offsets
from tests.support import ChildProcess, committed_offsets

RESTART_DELAY_S = 1.0  # Kubernetes backs off from 10 s; short here to keep the tests short


@dataclass
class Restart:
    pod: str
    exit_code: int
    after_s: float  # since the kubelet started

    def __str__(self) -> str:
        return f"{self.pod} exited {self.exit_code} at {self.after_s:.1f}s and was restarted"


@dataclass
class Pod:
    name: str
    process: ChildProcess
    log: Path
    starts: int = 1
    exited_at: float | None = None


@dataclass
class Kubelet:
    """Runs pods made by `spawn(name, log)` and restarts any that exits unless it was `delete`d."""

    spawn: Callable[[str, Path], ChildProcess]
    log_dir: Path
    pods: dict[str, Pod] = field(default_factory=dict)
    restarts: list[Restart] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="kubelet")
        self._thread.start()

    def create(self, name: str) -> None:
        log = self.log_dir / f"{name}.log"
        with self._lock:
            self.pods[name] = Pod(name, self.spawn(name, log), log)

    def kill(self, name: str) -> None:
        """SIGKILL the pod's process (a node crash); the watch loop restarts it."""
        self.pods[name].process.kill()

    def delete(self, name: str, grace_s: float = 60.0) -> int:
        """SIGTERM and wait like a scale-in: the pod is not restarted. Returns its exit code."""
        with self._lock:
            pod = self.pods.pop(name)
        pod.process.terminate()
        try:
            return pod.process.wait(grace_s)
        finally:
            pod.process.close()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                for pod in self.pods.values():
                    code = pod.process.proc.poll()
                    if code is None:
                        continue
                    now = time.monotonic()
                    if pod.exited_at is None:
                        pod.exited_at = now
                        self.restarts.append(Restart(pod.name, code, now - self._t0))
                    if now - pod.exited_at >= RESTART_DELAY_S:
                        pod.process.close()
                        pod.process = self.spawn(pod.name, pod.log)
                        pod.starts += 1
                        pod.exited_at = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for pod in list(self.pods.values()):
            pod.process.close()
        self.pods.clear()

    def dump_stacks(self) -> None:
        """SIGABRT every running pod: with PYTHONFAULTHANDLER set, Python writes each thread's stack to
        the pod's log first. For the failure message of a pod that stopped making progress."""
        with self._lock:
            self._stop.set()  # no restarts from here on
            procs = [pod.process.proc for pod in self.pods.values() if pod.process.proc.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGABRT)
        for proc in procs:
            proc.wait(30)

    def report(self) -> str:
        return "; ".join(map(str, self.restarts)) or "no restart"

    def tail(self, lines: int = 60) -> str:
        """The last log lines of every pod (state restore lines left out), for failure messages."""
        out = []
        for log in sorted(self.log_dir.glob("*.log")):
            kept = [
                line for line in log.read_text(errors="replace").splitlines() if "state_restored" not in line
            ]
            out.append(f"--- {log} (last {lines} lines)\n" + "\n".join(kept[-lines:]))
        return "\n".join(out)


def progress(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Records of `topic` the group has committed; -1 while the group coordinator is moving (a broker
    failure makes the lookup answer NOT_COORDINATOR or time out for a while)."""
    try:
        return sum(max(o, 0) for o in committed_offsets(bootstrap, group, topic, partitions).values())
    except KafkaException:
        return -1


def caught_up(bootstrap: str, admin: AdminClient, group: str, topic: str, partitions: int) -> bool:
    try:
        return committed_offsets(bootstrap, group, topic, partitions) == end_offsets(admin, topic)
    except KafkaException:
        return False


def members(admin: AdminClient, group: str) -> int:
    """Members of the consumer group holding at least one partition."""
    description = admin.describe_consumer_groups([group])[group].result(30)
    return sum(1 for m in description.members if m.assignment.topic_partitions)


def log_events(log: Path, event: str) -> list[dict[str, object]]:
    """The structlog JSON events named `event` in a pod's log (other lines are skipped)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if entry.get("event") == event:
            found.append(entry)
    return found
