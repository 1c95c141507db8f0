"""The broker itself failing under a running worker (issue 7, items 5 and 6), on a broker of the test's
own (SIGSTOP and restarts would disturb the shared one).

- Paused (SIGSTOP) for longer than one client call's timeout: the worker resumes the same calls -- a
  timed-out `commit_transaction` is called again -- and finishes without a restart, output exact.
  (The worker's own deadline, `client_deadline_ms`, ends a call that never succeeds: exit 1, restart.)
- Stopped and restarted mid-run: the worker recovers by itself, or exits non-zero and recovers when
  restarted as Kubernetes would, within a minute; output exact.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamsvc.dev import kafka
from streamsvc.runtime.topics import admin_client, ensure_topics
from tests.conftest import Names
from tests.runtime.test_fault_points import PARTITIONS, TOPOLOGY, check_exact, generate, worker_env
from tests.support import WorkerProcess, committed_offsets, wait_for

pytestmark = pytest.mark.chaos  # a broker of their own and minutes of faults: CI runs them


def _free_port_pair() -> int:
    while True:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        with socket.socket() as b:
            if b.connect_ex(("127.0.0.1", port + 1)) != 0 and port < 65000:
                return port


@pytest.fixture(scope="module")
def private_broker() -> Iterator[kafka.LocalKafka]:
    """A single-node broker for this module only, on free ports, with the project's cached jars."""
    home = Path(os.environ.get("STREAMSVC_HOME") or Path.home() / ".cache" / "streamsvc")
    broker = kafka.LocalKafka(home=home, port=_free_port_pair())
    external = os.environ.pop("STREAMSVC_BOOTSTRAP_SERVERS", None)  # start() would reuse it instead
    try:
        kafka.start(broker, fresh=True)
        yield broker
    finally:
        if external is not None:
            os.environ["STREAMSVC_BOOTSTRAP_SERVERS"] = external
        pid = kafka.running_pid(broker)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        kafka.stop(broker)


def _pid(broker: kafka.LocalKafka) -> int:
    pid = kafka.running_pid(broker)
    assert pid is not None, "the private broker is not running"
    return pid


def _prepare(broker: kafka.LocalKafka, test: str) -> Names:
    names = Names(admin_client(broker.bootstrap), test)
    ensure_topics(
        names.admin, {names("input"): PARTITIONS, names("output"): PARTITIONS, names("windows"): PARTITIONS}
    )
    return names


def test_paused_broker_the_worker_resumes_the_same_commit(
    private_broker: kafka.LocalKafka, tmp_path: Path
) -> None:
    bootstrap = private_broker.bootstrap
    names = _prepare(private_broker, "pause")
    app = names("app")
    expected = generate(bootstrap, names("input"))
    log = tmp_path / "worker.log"
    env = worker_env(
        bootstrap,
        names,
        app,
        STREAMSVC_COMMIT_INTERVAL_MS="500",
        STREAMSVC_BATCH_SIZE="200",
        STREAMSVC_CLIENT_TIMEOUT_MS="2000",  # one call's timeout, far below the pause
        # Slow batches: fetched records are still waiting when the broker freezes, so commits fall in it.
        STREAMSVC_FAULTS="after_produce:pause=0.05:1:*",
    )
    worker = WorkerProcess(TOPOLOGY, env, args=("--until-caught-up",), log=log)
    try:
        wait_for(
            lambda: (
                sum(
                    committed_offsets(bootstrap, f"{app}-keyed-windowed", names("input"), PARTITIONS).values()
                )
                > 2_000
            ),
            90,
            "progress",
        )
        assert worker.proc.poll() is None, f"the worker ended before the pause; see {log}"
        pid = _pid(private_broker)
        os.kill(pid, signal.SIGSTOP)
        try:
            # The fault itself: a broker frozen for 5 s, more than twice a client call's timeout. (Longer
            # than broker.session.timeout.ms, 9 s, and a lone KRaft node fences itself and stays leaderless.)
            time.sleep(5)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert worker.wait(180) == 0, f"the worker did not finish by itself after the pause; see {log}"
    finally:
        worker.close()
    text = log.read_text()
    assert "client_call_retry" in text, f"no client call was resumed during the pause; see {log}"
    assert "agent_stuck" not in text and "worker_exit_without_drain" not in text
    check_exact(bootstrap, names, expected)


def test_restarted_broker_the_worker_recovers_with_exact_output(
    private_broker: kafka.LocalKafka, tmp_path: Path
) -> None:
    bootstrap = private_broker.bootstrap
    names = _prepare(private_broker, "restart")
    app = names("app")
    expected = generate(bootstrap, names("input"))
    log = tmp_path / "worker.log"
    env = worker_env(bootstrap, names, app, STREAMSVC_BATCH_SIZE="200", STREAMSVC_CLIENT_DEADLINE_MS="30000")
    worker = WorkerProcess(TOPOLOGY, env, args=("--until-caught-up",), log=log)
    restarts = 0
    try:
        wait_for(
            lambda: (
                sum(
                    committed_offsets(bootstrap, f"{app}-keyed-windowed", names("input"), PARTITIONS).values()
                )
                > 2_000
            ),
            90,
            "progress",
        )
        kafka.stop(private_broker)
        down_at = time.monotonic()
        assert worker.proc.poll() is None or worker.proc.returncode != 0
        time.sleep(5)  # the fault itself: the broker stays down for 5 s
        kafka.start(private_broker)
        deadline = down_at + 60
        while True:  # the orchestrator: restart the worker whenever it exits non-zero
            code = worker.wait(max(1.0, deadline + 120 - time.monotonic()))
            if code == 0:
                break
            restarts += 1
            assert time.monotonic() < deadline, f"the worker did not recover within a minute; see {log}"
            worker.close()
            worker = WorkerProcess(TOPOLOGY, env, args=("--until-caught-up",), log=log)
    finally:
        worker.close()
    assert restarts <= 3, f"{restarts} restarts: a crash loop; see {log}"
    check_exact(bootstrap, names, expected)
