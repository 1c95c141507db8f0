"""Incremental rebalancing (issue 7, item 8): under cooperative-sticky and KIP-848 (`group.protocol =
"consumer"`) a worker keeps some partitions across a rebalance. When the commit in its revoke callback
is aborted, the retained partitions must be rewound too (their records were in the aborted
transaction), or their records would be skipped and their state would run ahead of its changelog.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime.test_fault_points import PARTITIONS, TOPOLOGY, check_exact, generate, worker_env
from tests.support import WorkerProcess, committed_offsets, wait_for

PROTOCOLS = {
    "cooperative-sticky": '"partition.assignment.strategy" = "cooperative-sticky"',
    "kip-848": '"group.protocol" = "consumer"',
}


@pytest.mark.chaos
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_aborted_revoke_commit_rewinds_retained_partitions(  # type: ignore[no-untyped-def]
    bootstrap: str, names, tmp_path: Path, protocol: str
) -> None:
    source = names.topic("input", PARTITIONS)
    names.topic("output", PARTITIONS)
    names.topic("windows", PARTITIONS)
    app = names("app")
    names.track(source + ".dlq", f"{app}.keyed-windowed.counts.changelog")
    expected = generate(bootstrap, source)
    config = tmp_path / "streamsvc.toml"
    config.write_text(f"[consumer]\n{PROTOCOLS[protocol]}\n")
    # A long commit interval keeps a transaction open when the second worker arrives.
    base = worker_env(bootstrap, names, app, STREAMSVC_COMMIT_INTERVAL_MS="3000", STREAMSVC_BATCH_SIZE="100")
    # Worker a is slowed down (50 ms per batch) so that it is mid-input when b arrives.
    faults = "revoke:abortable:1:*,before_produce:pause=0.05:1:*"
    env_a = {**base, "STREAMSVC_INSTANCE_ID": "a", "STREAMSVC_FAULTS": faults}
    env_b = {**base, "STREAMSVC_INSTANCE_ID": "b"}
    log = tmp_path / "workers.log"
    args = ("--config", str(config))
    a = WorkerProcess(TOPOLOGY, env_a, args=args, log=log)
    b = None
    try:
        group = f"{app}-keyed-windowed"
        progress = lambda: sum(committed_offsets(bootstrap, group, source, PARTITIONS).values())  # noqa: E731
        wait_for(lambda: progress() > 0, 90, "first commit")
        b = WorkerProcess(TOPOLOGY, env_b, args=args, log=log)
        fired = lambda: "injected abortable fault at revoke" in log.read_text()  # noqa: E731
        wait_for(fired, 90, "the revoke of worker a")
        wait_for(lambda: '"event": "rewound"' in log.read_text(), 30, "the retained partitions to be rewound")
        assert a.proc.poll() is None and b.proc.poll() is None, f"a worker died; see {log}"
        a.terminate()
        b.terminate()
        assert a.wait(60) == 0 and b.wait(60) == 0, f"the workers did not drain cleanly; see {log}"
    finally:
        a.close()
        if b is not None:
            b.close()
    env_c = {**env_b, "STREAMSVC_INSTANCE_ID": "c"}
    final = WorkerProcess(TOPOLOGY, env_c, args=("--until-caught-up", *args), log=log)
    try:
        assert final.wait(180) == 0, f"see {log}"
    finally:
        final.close()
    check_exact(bootstrap, names, expected)
