"""A local lakehouse for development and tests without Docker: an S3 object store and an Iceberg REST catalog.

- S3: versitygw (Apache-2.0), `versitygw posix DIR`, on 127.0.0.1 (`STREAMSVC_S3_PORT`, default 7070).
  Built once with `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0` into
  `$STREAMSVC_HOME/tools/versitygw-1.8.0/` (outside git). Its root credentials are
  `STREAMSVC_LAKE_ACCESS_KEY` / `STREAMSVC_LAKE_SECRET_KEY` (dev defaults below; loopback only).
- REST catalog: Apache Iceberg's REST test fixture (`org.apache.iceberg.rest.RESTCatalogServer` from the
  `iceberg-open-api` 1.10.1 test-fixtures jar, runtime dependencies resolved from Maven Central by `mvn`
  into `$STREAMSVC_HOME/iceberg-rest/1.10.1/libs`), configured by `CATALOG_*` environment variables: a JDBC
  catalog on SQLite (`CATALOG_URI=jdbc:sqlite:...`), warehouse `s3://<bucket>/`, `S3FileIO` against the
  local S3 with path-style access. The fixture listens on every interface by itself, so it is started
  through `LoopbackRESTCatalogServer` (java/), which binds the same servlet to 127.0.0.1
  (`STREAMSVC_REST_PORT`, default 8181). It has no authentication: it is a test fixture. Production uses a
  real REST catalog (Polaris, Lakekeeper, Glue, Nessie, Unity) with the same client configuration
  (`client_env`), plus a token or OAuth credential.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamsvc.dev import jvm
from streamsvc.errors import ConfigError

ICEBERG_VERSION = "1.10.1"
VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION = "1.8.0"
DEV_ACCESS_KEY = "streamsvc"
DEV_SECRET_KEY = "streamsvc-dev-secret"  # a local, loopback-only dev store; override via the environment
LAUNCHER = Path(__file__).parent / "java" / "LoopbackRESTCatalogServer.java"
LAUNCHER_CLASS = "org.apache.iceberg.rest.LoopbackRESTCatalogServer"

# The fixture's runtime classpath: the iceberg-open-api POM declares no dependencies (they live only in
# Iceberg's Gradle build), so they are listed here. Hadoop's Configuration is needed by the fixture's
# catalog builder, not Hadoop's file systems (S3FileIO comes from iceberg-aws + the AWS SDK bundle).
_REST_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamsvc.dev</groupId><artifactId>iceberg-rest-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    {iceberg}
    <dependency><groupId>org.eclipse.jetty</groupId><artifactId>jetty-servlet</artifactId>
      <version>11.0.25</version></dependency>
    <dependency><groupId>org.xerial</groupId><artifactId>sqlite-jdbc</artifactId>
      <version>3.50.3.0</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-common</artifactId>
      <version>3.4.1</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>
    </dependency>
    <dependency><groupId>org.apache.hadoop.thirdparty</groupId><artifactId>hadoop-shaded-guava</artifactId>
      <version>1.3.0</version></dependency>
    <dependency><groupId>com.fasterxml.woodstox</groupId><artifactId>woodstox-core</artifactId>
      <version>6.7.0</version></dependency>
    <dependency><groupId>commons-collections</groupId><artifactId>commons-collections</artifactId>
      <version>3.2.2</version></dependency>
  </dependencies>
</project>
"""
_ICEBERG_ARTIFACTS = (
    ("iceberg-open-api", "test-fixtures"),
    ("iceberg-core", None),
    ("iceberg-core", "tests"),  # RESTCatalogAdapter, RESTCatalogServlet
    ("iceberg-aws", None),
    ("iceberg-aws-bundle", None),
    ("iceberg-gcp", None),  # property classes the fixture's adapter refers to
    ("iceberg-azure", None),
)


def iceberg_dependency(artifact: str, classifier: str | None = None, version: str = ICEBERG_VERSION) -> str:
    """One `<dependency>` element of `org.apache.iceberg:<artifact>` for a resolution POM."""
    cls = f"<classifier>{classifier}</classifier>" if classifier else ""
    return (
        f"<dependency><groupId>org.apache.iceberg</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version>{cls}</dependency>"
    )


@dataclass(frozen=True)
class LocalLake:
    """Ports, paths and credentials of the local S3 + REST catalog."""

    home: Path
    s3_port: int = 7070
    rest_port: int = 8181
    bucket: str = "warehouse"
    region: str = "us-east-1"
    access_key: str = DEV_ACCESS_KEY
    secret_key: str = DEV_SECRET_KEY

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LocalLake:
        env = dict(os.environ) if env is None else env
        return cls(
            home=Path(env.get("STREAMSVC_HOME") or Path.home() / ".cache" / "streamsvc"),
            s3_port=int(env.get("STREAMSVC_S3_PORT", "7070")),
            rest_port=int(env.get("STREAMSVC_REST_PORT", "8181")),
            bucket=env.get("STREAMSVC_LAKE_BUCKET", "warehouse"),
            access_key=env.get("STREAMSVC_LAKE_ACCESS_KEY", DEV_ACCESS_KEY),
            secret_key=env.get("STREAMSVC_LAKE_SECRET_KEY", DEV_SECRET_KEY),
        )

    @classmethod
    def ephemeral(cls, home: Path | None = None) -> LocalLake:
        """A lake on free loopback ports (its own run directory), for a test session or a benchmark."""
        return cls(home=home or cls.from_env().home, s3_port=_free_port(), rest_port=_free_port())

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def rest_uri(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.bucket}/"

    @property
    def run_dir(self) -> Path:
        return self.home / f"lake-run-{self.s3_port}-{self.rest_port}"

    @property
    def versitygw(self) -> Path:
        return self.home / "tools" / f"versitygw-{VERSITYGW_VERSION}" / "versitygw"

    @property
    def rest_dir(self) -> Path:
        return self.home / "iceberg-rest" / ICEBERG_VERSION

    def client_env(self) -> dict[str, str]:
        """What a streamsvc sink (or any S3/Iceberg client) needs to use this lake."""
        return {
            "STREAMSVC_ICEBERG_CATALOG": "rest",
            "STREAMSVC_ICEBERG_URI": self.rest_uri,
            "STREAMSVC_ICEBERG_WAREHOUSE": self.warehouse,
            "STREAMSVC_ICEBERG_S3_ENDPOINT": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def rest_server_env(self) -> dict[str, str]:
        """The `CATALOG_*` variables of the REST fixture (`__` becomes `-`, `_` becomes `.`)."""
        return {
            "CATALOG_CATALOG__IMPL": "org.apache.iceberg.jdbc.JdbcCatalog",
            "CATALOG_URI": f"jdbc:sqlite:{self.run_dir / 'catalog.db'}",
            "CATALOG_JDBC_SCHEMA__VERSION": "V1",
            "CATALOG_WAREHOUSE": self.warehouse,
            "CATALOG_REST_PORT": str(self.rest_port),
            "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
            "CATALOG_S3_ENDPOINT": self.s3_endpoint,
            "CATALOG_S3_PATH__STYLE__ACCESS": "true",
            "CATALOG_S3_ACCESS__KEY__ID": self.access_key,
            "CATALOG_S3_SECRET__ACCESS__KEY": self.secret_key,
            "CATALOG_CLIENT_REGION": self.region,
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _say_about(service: str, msg: str) -> None:
    _say(f"{service}: {msg}")


def _say(msg: str) -> None:
    print(f"[streamsvc dev lake] {msg}", file=sys.stderr, flush=True)


# ---- building / fetching (first run only) ------------------------------------------------------------


def ensure_versitygw(lake: LocalLake) -> Path:
    """The versitygw binary, built with `go install` the first time."""
    if lake.versitygw.is_file():
        return lake.versitygw
    go = shutil.which("go")
    if not go:
        raise ConfigError("Go is needed once to build versitygw (the local S3); install Go 1.22+")
    target = f"{VERSITYGW_MODULE}@v{VERSITYGW_VERSION}"
    _say(f"building {target} (first run only, a few minutes)")
    lake.versitygw.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(lake.versitygw.parent), "GOFLAGS": "-buildvcs=false"}
    done = subprocess.run([go, "install", target], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not lake.versitygw.is_file():
        raise ConfigError(f"go install {target} failed:\n{done.stdout}\n{done.stderr}")
    return lake.versitygw


def rest_classpath(lake: LocalLake) -> str:
    """Classpath of the REST fixture + launcher, resolving jars and compiling the launcher when needed."""
    libs, classes = lake.rest_dir / "libs", lake.rest_dir / "classes"
    if not any(libs.glob("iceberg-open-api-*-test-fixtures.jar")):
        _say(f"resolving the Iceberg {ICEBERG_VERSION} REST fixture from Maven Central (first run only)")
        deps = "\n    ".join(iceberg_dependency(a, c) for a, c in _ICEBERG_ARTIFACTS)
        jvm.maven_copy_dependencies(_REST_POM.format(iceberg=deps), lake.rest_dir / "resolve", libs)
    source = LAUNCHER.read_bytes()
    stamp = classes / "source.sha256"
    digest = hashlib.sha256(source).hexdigest()
    if not stamp.is_file() or stamp.read_text() != digest:
        classes.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                jvm.java_tool("javac", needed_for="the Iceberg REST catalog"),
                "-d",
                str(classes),
                "-cp",
                f"{libs}/*",
                str(LAUNCHER),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ConfigError(f"compiling {LAUNCHER.name} failed:\n{done.stdout}\n{done.stderr}")
        stamp.write_text(digest)
    return f"{classes}{os.pathsep}{libs}/*"


# ---- processes ---------------------------------------------------------------------------------------


def _pid_file(lake: LocalLake, name: str) -> Path:
    return lake.run_dir / f"{name}.pid"


def _s3_answers(lake: LocalLake) -> bool:
    try:
        urllib.request.urlopen(lake.s3_endpoint, timeout=2).close()
        return True
    except urllib.error.HTTPError:  # 403 without credentials: it is up
        return True
    except OSError:
        return False


def _rest_answers(lake: LocalLake) -> bool:
    try:
        with urllib.request.urlopen(f"{lake.rest_uri}/v1/config", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _spawn(lake: LocalLake, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (lake.run_dir / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=lake.run_dir,
            start_new_session=True,  # outlives the CLI; stopped by `streamsvc dev lake stop`
        )
    _pid_file(lake, name).write_text(str(proc.pid))
    return proc


Probe = Callable[[LocalLake], bool]


def _wait(lake: LocalLake, name: str, proc: subprocess.Popen[bytes], ready: Probe, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"{name} exited with code {proc.returncode}; see {lake.run_dir / name}.log")
        if ready(lake):
            return
        time.sleep(0.3)
    raise ConfigError(f"{name} did not answer within {wait_s:.0f}s; see {lake.run_dir / name}.log")


def _start_s3(lake: LocalLake, wait_s: float) -> None:
    if jvm.running_pid(_pid_file(lake, "versitygw")) and _s3_answers(lake):
        return
    if jvm.port_taken(lake.s3_port):
        raise ConfigError(f"127.0.0.1:{lake.s3_port} is in use; set STREAMSVC_S3_PORT to move the local S3")
    binary = ensure_versitygw(lake)
    data = lake.run_dir / "s3"
    data.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ROOT_ACCESS_KEY": lake.access_key,  # from the environment, not argv (visible in ps)
        "ROOT_SECRET_KEY": lake.secret_key,
    }
    argv = [str(binary), "--quiet", "--port", f"127.0.0.1:{lake.s3_port}", "--region", lake.region, "posix"]
    if not _supports_xattrs(data):  # object metadata then lives in a sidecar directory
        (lake.run_dir / "s3-meta").mkdir(exist_ok=True)
        argv += ["--sidecar", str(lake.run_dir / "s3-meta")]
    argv.append(str(data))
    proc = _spawn(lake, "versitygw", argv, env)
    _wait(lake, "versitygw", proc, _s3_answers, wait_s)
    _ensure_bucket(lake)
    _say(f"S3 (versitygw {VERSITYGW_VERSION}, pid {proc.pid}) at {lake.s3_endpoint}, data in {data}")


def _supports_xattrs(directory: Path) -> bool:
    try:
        os.setxattr(directory, "user.streamsvc", b"1")
        os.removexattr(directory, "user.streamsvc")
        return True
    except OSError:
        return False


def _ensure_bucket(lake: LocalLake) -> None:
    from pyarrow import fs as pafs

    s3 = pafs.S3FileSystem(
        access_key=lake.access_key,
        secret_key=lake.secret_key,
        region=lake.region,
        endpoint_override=lake.s3_endpoint,
        allow_bucket_creation=True,
    )
    if s3.get_file_info(lake.bucket).type == pafs.FileType.NotFound:
        s3.create_dir(lake.bucket)


def _start_rest(lake: LocalLake, wait_s: float) -> None:
    if jvm.running_pid(_pid_file(lake, "rest-catalog")) and _rest_answers(lake):
        return
    if jvm.port_taken(lake.rest_port):
        raise ConfigError(
            f"127.0.0.1:{lake.rest_port} is in use; set STREAMSVC_REST_PORT to move the local REST catalog"
        )
    classpath = rest_classpath(lake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATALOG_")}
    env |= {**lake.rest_server_env(), "AWS_REGION": lake.region}
    heap = os.environ.get("STREAMSVC_REST_HEAP", "384m")
    argv = [
        jvm.java_tool("java", needed_for="the Iceberg REST catalog"),
        f"-Xmx{heap}",
        "-Dstreamsvc.rest.host=127.0.0.1",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        classpath,
        LAUNCHER_CLASS,
    ]
    proc = _spawn(lake, "rest-catalog", argv, env)
    _wait(lake, "rest-catalog", proc, _rest_answers, wait_s)
    _say(f"Iceberg REST catalog (fixture {ICEBERG_VERSION}, pid {proc.pid}) at {lake.rest_uri}")


def install(lake: LocalLake) -> None:
    """Build versitygw and fetch + compile the REST fixture, without starting anything."""
    _say(f"versitygw: {ensure_versitygw(lake)}")
    rest_classpath(lake)
    _say(f"Iceberg REST fixture: {lake.rest_dir}")


def start(lake: LocalLake, fresh: bool = False, wait_s: float = 120.0) -> dict[str, str]:
    """Start S3 and the REST catalog if needed; returns the client environment (`client_env`)."""
    if fresh:
        stop(lake)
        shutil.rmtree(lake.run_dir, ignore_errors=True)
    lake.run_dir.mkdir(parents=True, exist_ok=True)
    _start_s3(lake, wait_s)
    _start_rest(lake, wait_s)
    return lake.client_env()


def stop(lake: LocalLake) -> bool:
    """Stop both services; False when neither was running."""
    stopped = False
    for name in ("rest-catalog", "versitygw"):
        if jvm.stop_pid(_pid_file(lake, name), 30, functools.partial(_say_about, name)):
            stopped = True
    if not stopped:
        _say("not running")
    return stopped


def status(lake: LocalLake) -> bool:
    """True when both answer."""
    s3 = bool(jvm.running_pid(_pid_file(lake, "versitygw"))) and _s3_answers(lake)
    rest = bool(jvm.running_pid(_pid_file(lake, "rest-catalog"))) and _rest_answers(lake)
    _say(f"S3 {lake.s3_endpoint}: {'running' if s3 else 'not running'}")
    _say(f"REST catalog {lake.rest_uri}: {'running' if rest else 'not running'}")
    return s3 and rest
