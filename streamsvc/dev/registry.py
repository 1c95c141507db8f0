"""A real schema registry for development and tests: Apicurio Registry with its Confluent-compatible API.

The distribution (`io.apicurio:apicurio-registry-app`, type tar.gz, classifier `all`) is resolved from
Maven Central by `mvn` into `$STREAMSVC_HOME/apicurio/<version>` the first time, then run as
`java -jar quarkus-run.jar` (3.x, Java 21+) or `java -jar apicurio-registry-app-<v>-runner.jar` (2.6.x,
Java 17, the fallback when no Java 21 is installed). Storage is in memory: every start begins empty.
Clients use `http://127.0.0.1:<port>/apis/ccompat/v7`, which speaks the Confluent Schema Registry API.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streamsvc.dev import jvm
from streamsvc.errors import ConfigError
from streamsvc.registry.client import REGISTRY_URL_ENV

APICURIO_VERSION = "3.3.3"  # needs Java 21+
APICURIO_FALLBACK_VERSION = "2.6.13.Final"  # runs on Java 17
CCOMPAT_PATH = "/apis/ccompat/v7"
# The Confluent Schema Registry's default; Apicurio's own default is no compatibility rule at all.
DEFAULT_COMPATIBILITY = "BACKWARD"


@dataclass(frozen=True)
class LocalRegistry:
    """Paths and ports of the project's local schema registry (the management port is `port + 1`)."""

    home: Path
    port: int

    @classmethod
    def from_env(cls) -> LocalRegistry:
        home = Path(os.environ.get("STREAMSVC_HOME", Path.home() / ".cache" / "streamsvc"))
        return cls(home=home, port=int(os.environ.get("STREAMSVC_REGISTRY_PORT", "8081")))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def run_dir(self) -> Path:
        return self.home / f"registry-run-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "registry.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "registry.log"

    def distribution(self, version: str) -> Path:
        return self.home / "apicurio" / version


def _say(msg: str) -> None:
    jvm.say("registry", msg)


def registry_answers(url: str, timeout: float = 2.0) -> bool:
    """True when `url` answers the Confluent API's subject listing."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/subjects", timeout=timeout) as response:
            return int(response.status) == 200
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors
        return False


def _launcher(dist: Path) -> Path | None:
    quarkus = dist / "quarkus-run.jar"
    if quarkus.is_file():
        return quarkus
    return next(iter(sorted(dist.glob("*-runner.jar"))), None)


def _install(r: LocalRegistry, version: str) -> Path:
    """The launcher jar of Apicurio `version`, downloading and unpacking it the first time."""
    dist = r.distribution(version)
    launcher = _launcher(dist)
    if launcher is not None:
        return launcher
    coordinates = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
    _say(f"resolving {coordinates} from Maven Central (first run only)")
    downloads = dist.parent / "download"
    archive = jvm.maven_artifact(coordinates, downloads)
    unpacking = dist.with_name(f"{version}.unpacking")
    shutil.rmtree(unpacking, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(unpacking, filter="data")
    unpacking.rename(dist)  # atomic: a half-unpacked tree is never taken for an installed one
    archive.unlink()
    launcher = _launcher(dist)
    if launcher is None:
        raise ConfigError(f"{coordinates} unpacked into {dist} but holds no quarkus-run.jar or *-runner.jar")
    return launcher


def _choose() -> tuple[str, str]:
    """`(java, Apicurio version)`: $STREAMSVC_REGISTRY_VERSION if set, else 3.x on Java 21+, else the 2.6
    line on Java 17."""
    pinned = os.environ.get("STREAMSVC_REGISTRY_VERSION")
    if pinned:
        needs = 17 if pinned.startswith("2.") else 21
        return jvm.find_java(needs, f"Apicurio Registry {pinned}")[0], pinned
    try:
        java, _ = jvm.find_java(21, f"Apicurio Registry {APICURIO_VERSION}")
        return java, APICURIO_VERSION
    except ConfigError:
        java, _ = jvm.find_java(17, f"Apicurio Registry {APICURIO_FALLBACK_VERSION} (or Java 21+ for 3.x)")
        return java, APICURIO_FALLBACK_VERSION


def _system_properties(r: LocalRegistry, version: str) -> list[str]:
    props = {
        "quarkus.http.host": "127.0.0.1",
        "quarkus.http.port": str(r.port),
        "quarkus.http.access-log.enabled": "false",
    }
    if version.startswith("2."):
        props["quarkus.management.enabled"] = "false"
    else:
        props["quarkus.management.host"] = "127.0.0.1"  # health and metrics; Apicurio's default is 9000
        props["quarkus.management.port"] = str(r.port + 1)
        # A small connection pool for the in-memory H2 store (Apicurio's default opens 20 at start).
        props["apicurio.datasource.jdbc.initial-size"] = "2"
        props["apicurio.datasource.jdbc.min-size"] = "2"
    return [f"-D{key}={value}" for key, value in props.items()]


def _set_global_compatibility(url: str, level: str) -> None:
    request = urllib.request.Request(
        f"{url}/config",
        data=json.dumps({"compatibility": level}).encode(),
        method="PUT",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def running_pid(r: LocalRegistry) -> int | None:
    return jvm.running_pid(r.pid_file)


def start(r: LocalRegistry, wait_s: float = 180.0) -> str:
    """Start the registry if needed and return its Confluent-compatible URL once it answers."""
    external = os.environ.get(REGISTRY_URL_ENV)
    if external:
        if not registry_answers(external, timeout=10):
            raise ConfigError(f"{REGISTRY_URL_ENV}={external} does not answer; start it or unset it")
        _say(f"using the existing registry at {external} ({REGISTRY_URL_ENV})")
        return external
    if running_pid(r) and registry_answers(r.url):
        _say(f"already running (pid {running_pid(r)}) at {r.url}")
        return r.url
    for port in (r.port, r.port + 1):
        if jvm.port_taken(port):
            raise ConfigError(
                f"127.0.0.1:{port} is in use by another process; stop it, or set STREAMSVC_REGISTRY_PORT "
                f"to move the local registry (it uses that port and the next one), or set {REGISTRY_URL_ENV} "
                "to use that registry"
            )
    java, version = _choose()
    launcher = _install(r, version)
    r.run_dir.mkdir(parents=True, exist_ok=True)
    heap = os.environ.get("STREAMSVC_REGISTRY_HEAP", "512m")
    jvm_flags = [f"-Xmx{heap}", "-XX:+UseSerialGC", *_system_properties(r, version)]
    command = [java, *jvm_flags, "-jar", str(launcher)]
    what = f"Apicurio Registry {version} ({java})"
    ready = functools.partial(registry_answers, r.url)
    jvm.spawn_until_ready(command, what, r.pid_file, r.log_file, ready, wait_s, _say, cwd=launcher.parent)
    if version.startswith("2."):
        # 2.6 treats a subject's NONE as "no subject rule", so the global rule would still apply to it.
        _say(f"ready: {r.url} (no global compatibility rule, in-memory storage)")
    else:
        _set_global_compatibility(r.url, DEFAULT_COMPATIBILITY)
        _say(f"ready: {r.url} (global compatibility {DEFAULT_COMPATIBILITY}, in-memory storage)")
    return r.url


def stop(r: LocalRegistry, wait_s: float = 30.0) -> bool:
    """Stop the registry started by `start`; returns False when none was running."""
    return jvm.stop_pid(r.pid_file, wait_s, _say)


def status(r: LocalRegistry) -> bool:
    pid = running_pid(r)
    if pid and registry_answers(r.url):
        _say(f"running (pid {pid}) at {r.url}, log {r.log_file}")
        return True
    _say("not running" if pid is None else f"pid {pid} exists but {r.url} does not answer")
    return False
