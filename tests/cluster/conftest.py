"""Fixtures for the tests against the local 3-broker cluster (`streamsvc dev kafka start --brokers 3`).

The cluster is started here when it is not running (and stopped again at the end of the session);
one that already runs is used and left running. `bootstrap` and `admin` (so also `names`) point at it for
every test in this directory. The tests kill and restart brokers; after each test every node is brought back
and the cluster waited on until no partition is under-replicated, so a failed test cannot leave the
next one a broken cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from streamsvc.dev import kafka_cluster
from streamsvc.dev.cluster_state import elect_preferred_leaders, wait_fully_replicated
from streamsvc.observability.logging import configure_logging
from streamsvc.runtime.topics import admin_client


@pytest.fixture(scope="session")
def cluster() -> Iterator[kafka_cluster.LocalCluster]:
    configure_logging("WARNING")
    local = kafka_cluster.LocalCluster.from_env(3)
    was_running = all(kafka_cluster.node_pid(n) for n in local.nodes)
    kafka_cluster.start(local)
    yield local
    if not was_running:
        kafka_cluster.stop(local)


@pytest.fixture(scope="session")
def bootstrap(cluster: kafka_cluster.LocalCluster) -> str:
    return cluster.bootstrap


@pytest.fixture(scope="session")
def admin(bootstrap: str) -> AdminClient:
    return admin_client(bootstrap)


@pytest.fixture(autouse=True)
def every_node_back(cluster: kafka_cluster.LocalCluster, admin: AdminClient) -> Iterator[None]:
    yield
    for node in cluster.nodes:
        if kafka_cluster.node_pid(node) is None:
            kafka_cluster.start_node(cluster, node.node_id)
    wait_fully_replicated(admin)
    elect_preferred_leaders(admin)  # the next test starts with leadership spread over the brokers
