"""Start-up checks shared by the agents: the broker answers, the sources exist, internal topics agree.

An agent refuses to start rather than guess: a missing source topic fails at once (or after a visible,
bounded wait, `wait_for_sources_s`) with its name, instead of hanging; dead-letter and changelog topics
are created with the partition count of the source they belong to, and one that already exists with
another count is an error (a changelog partition is a source partition's state).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamsvc.config import Replication
from streamsvc.errors import ConfigError, TopologyError
from streamsvc.runtime.topics import admin_client, ensure_topics, partition_counts

WAIT_LOG_INTERVAL_S = 10.0


def check_reachable(bootstrap: str, timeout_s: float = 10.0) -> AdminClient:
    """An admin client on `bootstrap`, once a metadata request has answered (quietly: a wrong address
    gives one clear error, not pages of client logs)."""
    # No error_cb: an admin client serves callbacks on librdkafka's own thread, which confluent-kafka
    # does not allow (it aborts the process).
    probe = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        probe.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ConfigError(
            f"cannot reach Kafka at {bootstrap} within {timeout_s:.0f} s ({exc.args[0]}); "
            "check bootstrap_servers (STREAMSVC_BOOTSTRAP_SERVERS)"
        ) from None
    return admin_client(bootstrap)


def source_partitions(admin: AdminClient, topics: Iterable[str], wait_s: float, log: Any) -> dict[str, int]:
    """Partition count of every source topic; raises `ConfigError` naming the missing ones, after
    waiting up to `wait_s` for them to appear (0: at once)."""
    wanted = sorted(set(topics))
    deadline = time.monotonic() + wait_s
    next_log = 0.0
    while True:
        counts = partition_counts(admin, wanted)
        missing = [t for t in wanted if t not in counts]
        if not missing:
            return counts
        now = time.monotonic()
        if now >= deadline:
            waited = f" after waiting {wait_s:.0f} s" if wait_s else ""
            raise ConfigError(
                f"source topic(s) {missing} do not exist{waited}; create them (streamsvc topics create) "
                "or set wait_for_sources_s to wait for them"
            )
        if now >= next_log:
            log.warning("waiting_for_source_topics", missing=missing, remaining_s=round(deadline - now))
            next_log = now + WAIT_LOG_INTERVAL_S
        time.sleep(min(1.0, deadline - now))


def ensure_internal(
    admin: AdminClient,
    wanted: Mapping[str, int],
    config: Mapping[str, str] | None = None,
    strict: bool = True,
    replication: Replication | None = None,
) -> list[str]:
    """Create the topics of `wanted` (name -> partitions) that are missing, replicated as `replication`
    (`Settings.replication`); with `strict`, an existing one with another partition count is a
    `TopologyError`."""
    if strict:
        existing = partition_counts(admin, list(wanted))
        wrong = {t: (n, wanted[t]) for t, n in existing.items() if n != wanted[t]}
        if wrong:
            listing = "; ".join(
                f"{t} has {n} partitions, its source {want}" for t, (n, want) in sorted(wrong.items())
            )
            raise TopologyError(f"internal topics disagree with their sources: {listing}")
    return ensure_topics(admin, dict(wanted), config, replication=replication)
