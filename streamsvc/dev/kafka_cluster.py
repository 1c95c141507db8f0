"""A real three-node Apache Kafka (KRaft) cluster for development and the failover tests, without Docker.

Every node is a combined broker+controller (`process.roles=broker,controller`) run from the same jars as
the single dev broker (`streamsvc.dev.kafka`), with its own ports and data directory. The controllers form
a dynamic quorum (KIP-853): every node lists all controllers in `controller.quorum.bootstrap.servers` and
is formatted once with the same `--initial-controllers id@host:port:directory-id,...`, as Kafka's
operations guide describes for bootstrapping with multiple controllers. Internal and created topics
default to replication factor 3 with `min.insync.replicas=2`, as a production cluster would be set.

Node `i` (1-based) listens on `base + 2(i-1)` (clients) and the next port (controller); the base port is
`STREAMSVC_KAFKA_CLUSTER_PORT` (default 29092, clear of the single broker's 9092/9093).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from streamsvc.dev import kafka
from streamsvc.errors import ConfigError

DEFAULT_CLUSTER_PORT = 29092
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
# Kafka's default is 50 for both; fewer keeps start-up and recovery light on a 2-core machine while
# leaving every broker leader of several coordinator partitions.
INTERNAL_PARTITIONS = 12


@dataclass(frozen=True)
class ClusterNode:
    """One combined broker+controller of the local cluster."""

    node_id: int
    broker_port: int
    controller_port: int
    run_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "kafka.pid"

    @property
    def properties(self) -> Path:
        return self.run_dir / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "server.log"


@dataclass(frozen=True)
class LocalCluster:
    """Paths and ports of the project's local multi-node cluster."""

    home: Path
    base_port: int = DEFAULT_CLUSTER_PORT
    size: int = 3
    version: str = kafka.KAFKA_VERSION

    @classmethod
    def from_env(cls, size: int = 3) -> LocalCluster:
        if size < REPLICATION_FACTOR:
            raise ConfigError(f"a local cluster needs at least {REPLICATION_FACTOR} brokers, got {size}")
        single = kafka.LocalKafka.from_env()
        port = int(os.environ.get("STREAMSVC_KAFKA_CLUSTER_PORT", str(DEFAULT_CLUSTER_PORT)))
        return cls(home=single.home, base_port=port, size=size)

    @property
    def run_dir(self) -> Path:
        return self.home / f"kafka-cluster-{self.base_port}"

    @property
    def nodes(self) -> list[ClusterNode]:
        return [
            ClusterNode(
                i, self.base_port + 2 * (i - 1), self.base_port + 2 * (i - 1) + 1, self.run_dir / f"node-{i}"
            )
            for i in range(1, self.size + 1)
        ]

    def node(self, node_id: int) -> ClusterNode:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise ValueError(f"no node {node_id} in a {self.size}-node cluster")

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def quorum_file(self) -> Path:
        """Cluster id and the metadata directory id of every controller, fixed at the first format."""
        return self.run_dir / "quorum.properties"

    def _as_single(self) -> kafka.LocalKafka:
        return kafka.LocalKafka(home=self.home, port=self.base_port, version=self.version)


def server_properties(cluster: LocalCluster, node: ClusterNode) -> str:
    quorum = ",".join(f"127.0.0.1:{n.controller_port}" for n in cluster.nodes)
    rf, isr = REPLICATION_FACTOR, MIN_INSYNC_REPLICAS
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.bootstrap.servers={quorum}",
            f"listeners=PLAINTEXT://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
            # The controller listener is advertised too: dynamic voters find each other through it.
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.broker_port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={node.run_dir / 'data'}",
            "num.partitions=1",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={isr}",
            f"offsets.topic.replication.factor={rf}",
            f"offsets.topic.num.partitions={INTERNAL_PARTITIONS}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={isr}",
            f"transaction.state.log.num.partitions={INTERNAL_PARTITIONS}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={isr}",
            "unclean.leader.election.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "",
        ]
    )


def _quorum(cluster: LocalCluster) -> tuple[str, str]:
    """(cluster id, `--initial-controllers` value), created once and kept next to the nodes' data."""
    if cluster.quorum_file.exists():
        values = dict(
            line.split("=", 1) for line in cluster.quorum_file.read_text().splitlines() if "=" in line
        )
        return values["cluster.id"], values["initial.controllers"]
    voters = ",".join(
        f"{n.node_id}@127.0.0.1:{n.controller_port}:{kafka._cluster_id()}" for n in cluster.nodes
    )
    cluster_id = kafka._cluster_id()
    cluster.run_dir.mkdir(parents=True, exist_ok=True)
    cluster.quorum_file.write_text(f"cluster.id={cluster_id}\ninitial.controllers={voters}\n")
    return cluster_id, voters


def node_pid(node: ClusterNode) -> int | None:
    """The node's live process id, or None (a dead child of this process is reaped, not counted)."""
    try:
        pid = int(node.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None  # our own child, just exited
    except ChildProcessError:
        pass  # not our child: started by another process (the CLI)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


def _prepare_node(cluster: LocalCluster, node: ClusterNode) -> list[str]:
    """Check the node's ports, write its config and format its storage once; return the java prefix."""
    kafka.check_ports_free(
        (node.broker_port, node.controller_port),
        "set STREAMSVC_KAFKA_CLUSTER_PORT to move the local cluster "
        f"(it uses {2 * cluster.size} ports from {cluster.base_port})",
    )
    java = kafka.prepare_node(cluster._as_single(), node.run_dir, server_properties(cluster, node))
    if not (node.run_dir / "data" / "meta.properties").exists():
        cluster_id, voters = _quorum(cluster)
        kafka.format_storage(java, node.properties, cluster_id, ["--initial-controllers", voters])
    return java


def _launch_nodes(cluster: LocalCluster, nodes: list[ClusterNode]) -> None:
    _quorum(cluster)  # fixed before the nodes are formatted in parallel
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        javas = list(pool.map(lambda n: _prepare_node(cluster, n), nodes))
    heap = os.environ.get("STREAMSVC_KAFKA_HEAP", "512m")
    for node, java in zip(nodes, javas, strict=True):
        proc = kafka.launch(java, node.properties, node.run_dir, heap)
        node.pid_file.write_text(str(proc.pid))
        kafka._say(f"node {node.node_id}: started (pid {proc.pid}) at {node.bootstrap}")


def registered_brokers(bootstrap: str, timeout: float = 5.0) -> set[int]:
    """Ids of the brokers the cluster's metadata lists as alive (empty when nothing answers)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return set(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return set()


def _wait_registered(cluster: LocalCluster, node_ids: set[int], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for node_id in node_ids:
            if node_pid(cluster.node(node_id)) is None:
                raise ConfigError(
                    f"node {node_id} exited; see {cluster.node(node_id).run_dir / 'stdout.log'}"
                )
        if all(
            kafka.broker_answers(cluster.node(i).bootstrap)
            and node_ids <= registered_brokers(cluster.node(i).bootstrap)
            for i in node_ids
        ):
            return
        time.sleep(0.5)
    raise ConfigError(
        f"nodes {sorted(node_ids)} did not register within {wait_s:.0f}s; see {cluster.run_dir}"
    )


def start(cluster: LocalCluster, fresh: bool = False, wait_s: float = 180.0) -> str:
    """Start every node that is not running and return the bootstrap list once all brokers registered."""
    if fresh:
        stop(cluster)
        shutil.rmtree(cluster.run_dir, ignore_errors=True)
    # All nodes start together: a controller quorum of three needs two voters before anything answers.
    _launch_nodes(cluster, [n for n in cluster.nodes if node_pid(n) is None])
    _wait_registered(cluster, {n.node_id for n in cluster.nodes}, wait_s)
    kafka._say(f"ready: {cluster.size} brokers, bootstrap servers {cluster.bootstrap}")
    return cluster.bootstrap


def start_node(cluster: LocalCluster, node_id: int, wait_s: float = 120.0) -> None:
    """(Re)start one stopped node and wait until the cluster lists it as a broker again."""
    node = cluster.node(node_id)
    if node_pid(node) is None:
        _launch_nodes(cluster, [node])
    _wait_registered(cluster, {node_id}, wait_s)


def stop_node(cluster: LocalCluster, node_id: int, sig: int = signal.SIGTERM, wait_s: float = 120.0) -> int:
    """Send `sig` to one node (SIGTERM: controlled shutdown; SIGKILL: a crash) and wait until it is gone.

    Returns the pid it had. A node that ignores SIGTERM for `wait_s` is killed."""
    node = cluster.node(node_id)
    pid = node_pid(node)
    if pid is None:
        raise ConfigError(f"node {node_id} is not running")
    os.kill(pid, sig)
    deadline = time.monotonic() + wait_s
    while node_pid(node) is not None:
        if time.monotonic() > deadline:
            kafka._say(f"node {node_id} (pid {pid}) ignored {signal.Signals(sig).name} for {wait_s:.0f}s")
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
        time.sleep(0.1)
    return pid


def stop(cluster: LocalCluster, wait_s: float = 120.0) -> bool:
    """Stop every running node (SIGTERM, all at once); returns False when none was running."""
    running: list[tuple[ClusterNode, int]] = []
    for node in cluster.nodes:
        pid = node_pid(node)
        if pid is not None:
            running.append((node, pid))
    if not running:
        kafka._say("cluster not running")
        return False
    for _node, pid in running:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(node_pid(n) for n, _ in running):
        time.sleep(0.3)
    for node, pid in running:
        if node_pid(node) is not None:
            kafka._say(f"node {node.node_id} (pid {pid}) ignored SIGTERM for {wait_s:.0f}s; killing it")
            os.kill(pid, signal.SIGKILL)
        node.pid_file.unlink(missing_ok=True)
    kafka._say(f"stopped {len(running)} node(s)")
    return True


def status(cluster: LocalCluster) -> bool:
    """Print each node's state; True when every node runs and is registered."""
    alive = registered_brokers(cluster.bootstrap)
    healthy = True
    for node in cluster.nodes:
        pid = node_pid(node)
        state = (
            "not running"
            if pid is None
            else f"pid {pid}, " + ("registered" if node.node_id in alive else "not registered")
        )
        healthy = healthy and pid is not None and node.node_id in alive
        kafka._say(f"node {node.node_id} at {node.bootstrap}: {state}")
    kafka._say(f"data in {cluster.run_dir}")
    return healthy
