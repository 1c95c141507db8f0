"""A real single-node Apache Kafka (KRaft) for development, the demo and tests, without Docker.

The broker jars come from Maven Central (`org.apache.kafka:kafka_2.13`, resolved by `mvn` into a cache
outside the repository), or from an installed `KAFKA_HOME`, or, where Maven is absent, from the Apache
release tarball. Storage is formatted once (`kafka.tools.StorageTool format --standalone`), then the
broker runs as `kafka.Kafka server.properties`, exactly what Kafka's own scripts wrap.
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
import socket
import subprocess
import tarfile
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from streamsvc.dev import jvm
from streamsvc.errors import ConfigError

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"
TARBALL_URL = "https://archive.apache.org/dist/kafka/{v}/kafka_{s}-{v}.tgz"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamsvc.dev</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.kafka.additivity = false
logger.kafka.appenderRef.file.ref = file
logger.server.name = org.apache.kafka
logger.server.level = WARN
"""


@dataclass(frozen=True)
class LocalKafka:
    """Paths and ports of the project's local broker."""

    home: Path
    port: int
    version: str = KAFKA_VERSION

    @classmethod
    def from_env(cls) -> LocalKafka:
        home = Path(os.environ.get("STREAMSVC_HOME", Path.home() / ".cache" / "streamsvc"))
        return cls(home=home, port=int(os.environ.get("STREAMSVC_KAFKA_PORT", "9092")))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def libs(self) -> Path:
        return self.home / "kafka" / self.version / "libs"

    @property
    def run_dir(self) -> Path:
        return self.home / f"kafka-run-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "server.log"


def _say(msg: str) -> None:
    jvm.say("kafka", msg)


def _classpath(k: LocalKafka) -> str:
    kafka_home = os.environ.get("KAFKA_HOME")
    if kafka_home:
        libs = Path(kafka_home) / "libs"
        if not libs.is_dir():
            raise ConfigError(f"KAFKA_HOME={kafka_home} has no libs/ directory; unset it or fix the path")
        return f"{libs}/*"
    # kafka-tools (ConsumerGroupCommand, StreamsResetter) is checked too: older caches lack it.
    if not any(k.libs.glob(f"kafka_{SCALA_VERSION}-*.jar")) or not any(k.libs.glob("kafka-tools-[0-9]*.jar")):
        _fetch_jars(k)
    return f"{k.libs}/*"


def classpath(k: LocalKafka) -> str:
    """The broker's Java classpath (Kafka's jars, kafka-tools included), fetched on first use."""
    return _classpath(k)


def _fetch_jars(k: LocalKafka) -> None:
    k.libs.mkdir(parents=True, exist_ok=True)
    if shutil.which("mvn"):
        artifact = f"org.apache.kafka:kafka_{SCALA_VERSION}:{k.version}"
        _say(f"resolving {artifact} from Maven Central (first run only)")
        build = k.libs.parent / "resolve"
        build.mkdir(exist_ok=True)
        (build / "pom.xml").write_text(_POM.format(scala=SCALA_VERSION, kafka=k.version, log4j=LOG4J_VERSION))
        goal = ["dependency:copy-dependencies", f"-DoutputDirectory={k.libs}", "-DincludeScope=runtime"]
        jvm.run_mvn(["-f", str(build / "pom.xml"), *goal], "the Kafka jars")
        return
    url = TARBALL_URL.format(v=k.version, s=SCALA_VERSION)
    _say(f"mvn not found; downloading the Apache release {url}")
    archive = k.libs.parent / "kafka.tgz"
    urllib.request.urlretrieve(url, archive)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if "/libs/" in member.name and member.name.endswith(".jar"):
                member.name = Path(member.name).name
                tar.extract(member, k.libs, filter="data")
    archive.unlink()


def _java() -> str:
    return jvm.find_java(17, "the local Kafka broker")[0]


def _server_properties(k: LocalKafka) -> str:
    controller = k.port + 1
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{k.port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{k.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={k.run_dir / 'data'}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=10",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "",
        ]
    )


def _cluster_id() -> str:
    """A random KRaft cluster id; like Kafka's own, never starting with '-' (it would parse as an option)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def running_pid(k: LocalKafka) -> int | None:
    return jvm.running_pid(k.pid_file)


def broker_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when the first bootstrap address accepts TCP and answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout)
        return True
    except Exception:
        return False


def start(k: LocalKafka, fresh: bool = False, wait_s: float = 120.0) -> str:
    """Start the broker if needed and return its bootstrap address once it answers."""
    external = os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS")
    if external:
        if not broker_answers(external, timeout=10):
            raise ConfigError(f"STREAMSVC_BOOTSTRAP_SERVERS={external} does not answer; start it or unset it")
        _say(f"using the existing broker at {external} (STREAMSVC_BOOTSTRAP_SERVERS)")
        return external
    if running_pid(k) and broker_answers(k.bootstrap):
        _say(f"already running (pid {running_pid(k)}) at {k.bootstrap}")
        return k.bootstrap
    check_ports_free(
        (k.port, k.port + 1),
        "set STREAMSVC_KAFKA_PORT to move the local broker (it uses that port and the next one), "
        "or set STREAMSVC_BOOTSTRAP_SERVERS to use that broker",
    )
    if fresh and k.run_dir.exists():
        shutil.rmtree(k.run_dir)
    props = k.run_dir / "server.properties"
    java = prepare_node(k, k.run_dir, _server_properties(k))
    if not (k.run_dir / "data" / "meta.properties").exists():
        format_storage(java, props, _cluster_id(), ["--standalone"])
    heap = os.environ.get("STREAMSVC_KAFKA_HEAP", "768m")
    jvm.spawn_until_ready(
        java_command(java, props, heap),
        f"Kafka {k.version}",
        k.pid_file,
        k.run_dir / "stdout.log",
        functools.partial(broker_answers, k.bootstrap),
        wait_s,
        _say,
    )
    _say(f"ready: bootstrap servers {k.bootstrap}")
    return k.bootstrap


def check_ports_free(ports: tuple[int, ...], hint: str) -> None:
    for port in ports:
        if jvm.port_taken(port):
            raise ConfigError(f"127.0.0.1:{port} is in use by another process; stop it, or {hint}")


def prepare_node(k: LocalKafka, run_dir: Path, properties: str) -> list[str]:
    """Write `server.properties` and the log4j config into `run_dir`; return the java command prefix."""
    run_dir.mkdir(parents=True, exist_ok=True)
    classpath = _classpath(k)
    (run_dir / "server.properties").write_text(properties)
    log4j = run_dir / "log4j2.properties"
    log4j.write_text(_LOG4J2.format(log=run_dir / "server.log"))
    return [_java(), f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]


def format_storage(java: list[str], props: Path, cluster_id: str, quorum: list[str]) -> None:
    """`StorageTool format` once; `quorum` is `--standalone` or `--initial-controllers <voters>`."""
    _say(f"formatting KRaft storage for {props.parent} (cluster {cluster_id})")
    done = subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", *quorum, "-t", cluster_id, "-c", str(props)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ConfigError(f"formatting Kafka storage failed:\n{done.stdout}\n{done.stderr}")


def java_command(java: list[str], props: Path, heap: str) -> list[str]:
    """The command line of one Kafka node (`java` from `prepare_node`)."""
    return [java[0], f"-Xmx{heap}", "-Xms128m", "-XX:+UseG1GC", *java[1:], "kafka.Kafka", str(props)]


def launch(java: list[str], props: Path, run_dir: Path, heap: str) -> subprocess.Popen[bytes]:
    """Start `kafka.Kafka props` detached from this process (stopped by `stop`, not by our exit)."""
    with (run_dir / "stdout.log").open("ab") as out:
        return subprocess.Popen(
            java_command(java, props, heap),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(k: LocalKafka, wait_s: float = 60.0) -> bool:
    """Stop the broker started by `start`; returns False when none was running."""
    return jvm.stop_pid(k.pid_file, wait_s, _say)


def status(k: LocalKafka) -> bool:
    pid = running_pid(k)
    if pid and broker_answers(k.bootstrap):
        _say(f"running (pid {pid}) at {k.bootstrap}, data in {k.run_dir}")
        return True
    _say("not running" if pid is None else f"pid {pid} exists but {k.bootstrap} does not answer")
    return False
