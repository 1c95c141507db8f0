"""Scale-out of a stateful exactly-once worker on the 3-broker cluster: 1 -> 3 -> 1 workers while input
flows, one of the three killed -9 in the middle (issue #13 acceptance). Window state moves with its
partitions through the changelog; the outcome must equal the oracle, and the restores are reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.cluster.harness import AppRun
from tests.cluster.support import log_events, members
from tests.support import wait_for

pytestmark = pytest.mark.cluster

RECORDS = 200_000
RATE = 4_000.0


def test_scale_out_and_in_with_a_crash_keeps_the_output_exact(
    bootstrap: str, admin: AdminClient, names, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # 6 s sessions: a static member that is gone (scaled in) gives its partitions back that soon.
    run = AppRun(bootstrap, admin, names, tmp_path, session_timeout_ms=6000)
    feeder = run.feed(RECORDS, RATE, seed=1303, first=0.25)
    steps: list[str] = []

    def group_size(n: int, what: str) -> None:
        wait_for(lambda: members(admin, run.group) == n, 120, what, interval=0.5)
        steps.append(f"{n} member(s) at {run.progress()} committed, feeder at {feeder.fraction():.0%}")

    def assigned(pod: str, times: int) -> None:
        """Until the pod's log shows its `times`-th assignment (restore done, processing begins)."""
        log = tmp_path / f"{pod}.log"
        wait_for(lambda: len(log_events(log, "partitions_assigned")) >= times, 120, f"{pod} assigned")

    try:
        run.workers.create("w-0")
        done = run.wait_progress(RECORDS // 10, 180, "one worker to commit a tenth of the input")
        group_size(1, "one member")

        feeder.release(0.6)
        run.workers.create("w-1")
        run.workers.create("w-2")
        group_size(3, "three members")
        for pod in ("w-1", "w-2"):
            assigned(pod, 1)
        done = run.wait_progress(done + 5_000, 180, "progress with three workers")

        run.workers.kill("w-1")  # restarted by the kubelet, as Kubernetes restarts the pod
        steps.append(f"killed w-1 at {done} committed")
        assigned("w-1", 2)  # the restarted pod owns (and restored) its partitions again
        done = run.wait_progress(done + 5_000, 180, "progress after the kill")
        group_size(3, "the killed worker back in the group")

        feeder.release(0.85)
        done = run.wait_progress(int(RECORDS * 0.62), 180, "progress into the next share of the input")
        for pod in ("w-2", "w-1"):
            assert run.workers.delete(pod) == 0, f"{pod}: SIGTERM must drain and exit 0\n{run.workers.tail()}"
        group_size(1, "the group to shrink back to one worker")

        feeder.release(1.0)
        run.wait_caught_up(feeder, 600)
        assert run.workers.delete("w-0") == 0, f"SIGTERM must drain and exit 0\n{run.workers.tail()}"
    finally:
        print(
            f"\nscale-out: {'; '.join(steps)}; restores: {run.restores()}; restarts: {run.workers.report()}"
        )
        run.close()
    run.assert_no_open_transaction()
    got, expected = run.outcome()
    assert got == expected, got.diff(expected)
    restored = [
        int(str(e["entries"]))
        for pod in ("w-1", "w-2")
        for e in log_events(tmp_path / f"{pod}.log", "state_restored")
    ]
    assert sum(restored) > 0, "partitions moved to the new workers must have brought their window state"
