"""Pure helpers of the local cluster: Java's String.hashCode, the coordinator partition, node configs."""

from __future__ import annotations

from pathlib import Path

from streamsvc.dev.cluster_state import coordinator_partition, java_string_hash
from streamsvc.dev.kafka_cluster import LocalCluster, server_properties


def test_java_string_hash_matches_java() -> None:
    # Values of String.hashCode() as the JVM computes them.
    assert java_string_hash("") == 0
    assert java_string_hash("a") == 97
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -(2**31)  # Integer.MIN_VALUE
    assert java_string_hash("\U0001f600") == 0xD83D * 31 + 0xDE00  # a surrogate pair: two UTF-16 units


def test_coordinator_partition_follows_utils_abs() -> None:
    # Expected values from the JVM: s.hashCode() and Utils.abs(s.hashCode()) % 12 with kafka-clients
    # 4.1.1's org.apache.kafka.common.utils.Utils, run in jshell.
    jvm = {
        "streamsvc.app.w-0": (-2029675009, 1),
        "t.test_failover.1234abcd.app.keyed-windowed.w-0": (23901016, 4),
        "polygenelubricants": (-(2**31), 0),
        "\U0001f600x": (54959989, 1),
    }
    for text, (hash_code, partition) in jvm.items():
        assert java_string_hash(text) == hash_code, text
        assert coordinator_partition(text, 12) == partition, text


def test_nodes_have_own_ports_and_dirs_and_share_the_quorum(tmp_path: Path) -> None:
    cluster = LocalCluster(home=tmp_path, base_port=29092)
    assert [(n.broker_port, n.controller_port) for n in cluster.nodes] == [
        (29092, 29093),
        (29094, 29095),
        (29096, 29097),
    ]
    assert cluster.bootstrap == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    assert len({n.run_dir for n in cluster.nodes}) == 3
    for node in cluster.nodes:
        lines = set(server_properties(cluster, node).splitlines())
        for expected in (
            f"node.id={node.node_id}",
            "controller.quorum.bootstrap.servers=127.0.0.1:29093,127.0.0.1:29095,127.0.0.1:29097",
            "default.replication.factor=3",
            "min.insync.replicas=2",
            "offsets.topic.replication.factor=3",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
            f"log.dirs={node.run_dir / 'data'}",
        ):
            assert expected in lines
