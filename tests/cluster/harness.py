"""One run of `tests/topologies/branched_windowed.py` on the cluster: topics, worker pods, the feeder, and
the final comparison with the oracle."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, ConfigResource

from streamsvc.dev.cluster_state import wait_fully_replicated
from streamsvc.runtime.topics import end_offsets, read_all
from tests.cluster.support import Kubelet, caught_up, log_events, progress
from tests.cluster.workload import TOPOLOGY_NAME, Feeder, Outcome, generate, observed, oracle
from tests.support import ROOT, WorkerProcess, committed_offsets, wait_for

TOPOLOGY = str(ROOT / "tests" / "topologies" / "branched_windowed.py")
PARTITIONS = 6


@dataclass
class AppRun:
    bootstrap: str
    admin: AdminClient
    names: Any  # tests.conftest.Names
    tmp_path: Path

    session_timeout_ms: int | None = None  # None: librdkafka's default (45 s)

    def __post_init__(self) -> None:
        self.feeder: Feeder | None = None
        n = self.names
        self.app = n("app")
        self.source = n.topic("input", PARTITIONS)
        self.output, self.windows, self.dlq = n("output"), n("windows"), self.source + ".dlq"
        self.changelog = f"{self.app}.{TOPOLOGY_NAME}.counts.changelog"
        self.group = f"{self.app}-{TOPOLOGY_NAME}"  # a stateful agent's own consumer group
        n.track(self.output, self.windows, self.dlq, self.changelog)
        config = self.tmp_path / "streamsvc.toml"
        # A static member that is gone (scale-in, crash) gives its partitions back after this long.
        timeout = (
            "" if self.session_timeout_ms is None else f'"session.timeout.ms" = {self.session_timeout_ms}'
        )
        config.write_text(f"[consumer]\n{timeout}\n")
        self.env = {
            "STREAMSVC_BOOTSTRAP_SERVERS": self.bootstrap,
            "STREAMSVC_APP_ID": self.app,
            "STREAMSVC_TOPIC_INPUT": self.source,
            "STREAMSVC_TOPIC_OUTPUT": self.output,
            "STREAMSVC_TOPIC_WINDOWS": self.windows,
            "STREAMSVC_COMMIT_INTERVAL_MS": "100",
            "STREAMSVC_BATCH_SIZE": "500",
            "STREAMSVC_CONFIG": str(config),
            "PYTHONFAULTHANDLER": "1",  # stacks in the log on SIGABRT (see Kubelet.dump_stacks)
        }
        self.workers = Kubelet(
            lambda name, log: WorkerProcess(TOPOLOGY, {**self.env, "STREAMSVC_INSTANCE_ID": name}, log=log),
            self.tmp_path,
        )

    def transactional_id(self, pod: str) -> str:
        return f"{self.app}.{TOPOLOGY_NAME}.{pod}"

    def feed(self, records: int, rate: float, seed: int, first: float = 1.0) -> Feeder:
        """Start producing the generated input; only its `first` share until `Feeder.release`."""
        self.feeder = Feeder(self.bootstrap, self.source, generate(records, PARTITIONS, seed), rate)
        self.feeder.release(first)
        self.feeder.start()
        return self.feeder

    def progress(self) -> int:
        return progress(self.bootstrap, self.group, self.source, PARTITIONS)

    def wait_progress(self, beyond: int, timeout: float, what: str) -> int:
        """Until the workers committed more than `beyond` input records; fails with the pods' logs."""
        try:
            return int(wait_for(lambda: (p := self.progress()) > beyond and p, timeout, what, interval=0.5))
        except AssertionError as exc:
            raise self._stalled(exc) from None

    def _stalled(self, exc: AssertionError) -> AssertionError:
        """The failure of a wait on the workers, with what the input and the group looked like."""
        try:
            state = (
                f"input end offsets {end_offsets(self.admin, self.source)}, committed "
                f"{committed_offsets(self.bootstrap, self.group, self.source, PARTITIONS)}"
            )
        except Exception as err:
            state = f"offsets unavailable: {err}"
        fed = f"feeder produced {self.feeder.produced} of {len(self.feeder.records)}" if self.feeder else ""
        self.workers.dump_stacks()
        return AssertionError(
            f"{exc}; {fed}; {state}; restarts: {self.workers.report()}\n{self.workers.tail()}"
        )

    def wait_caught_up(self, feeder: Feeder, timeout: float) -> None:
        wait_for(feeder.done.is_set, timeout, "the feeder to deliver everything")
        assert not feeder.errors, feeder.errors[:5]
        try:
            wait_for(
                lambda: caught_up(self.bootstrap, self.admin, self.group, self.source, PARTITIONS),
                timeout,
                "the workers to commit the whole input",
                interval=0.5,
            )
        except AssertionError as exc:
            raise self._stalled(exc) from None

    def assert_no_open_transaction(self) -> None:
        """After the workers are gone, no output topic may have a transaction left open: its last
        stable offset would hide every later record from read_committed readers. Read on a settled
        cluster: while a replica is missing from an ISR, a leader's high watermark can stand still."""
        wait_fully_replicated(self.admin)
        for topic in (self.output, self.windows, self.dlq, self.changelog):
            stable = end_offsets(self.admin, topic, read_committed=True)
            high = end_offsets(self.admin, topic, read_committed=False)
            assert stable == high, f"{topic}: last stable offsets {stable} below high watermarks {high}"

    def outcome(self) -> tuple[Outcome, Outcome]:
        """(observed, expected) once the run is over."""
        expected = oracle(read_all(self.bootstrap, self.source))
        return observed(self.bootstrap, self.output, self.windows, self.dlq), expected

    def assert_replicated(self) -> None:
        """Every topic of the run (input, outputs, DLQ, changelog) has 3 replicas and min ISR 2."""
        topics = [self.source, self.output, self.windows, self.dlq, self.changelog]
        meta = self.admin.list_topics(timeout=10).topics
        for topic in topics:
            assert {len(p.replicas) for p in meta[topic].partitions.values()} == {3}, topic
        resources = [ConfigResource("topic", t) for t in topics]
        for res, future in self.admin.describe_configs(resources).items():
            assert future.result(30)["min.insync.replicas"].value == "2", res.name

    def restores(self) -> str:
        """Per pod: partition restores, entries restored, and the seconds between consecutive restores
        of one assignment (each partition is read by its own consumer, so this is the per-partition
        cost; the first restore of an assignment has no predecessor and is not timed)."""
        out = []
        for log in sorted(self.tmp_path.glob("*.log")):
            events = log_events(log, "state_restored")
            times = [datetime.fromisoformat(str(e["timestamp"])).timestamp() for e in events]
            gaps = [b - a for a, b in pairwise(times) if b - a < 5.0]
            entries = sum(int(str(e["entries"])) for e in events)
            timing = f", {statistics.median(gaps):.2f}s median per partition" if gaps else ""
            out.append(f"{log.stem}: {len(events)} partition restores, {entries} entries{timing}")
        return "; ".join(out)

    def close(self) -> None:
        self.workers.close()
