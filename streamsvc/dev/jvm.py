"""Shared plumbing for the JVM services the dev stack runs (Kafka, the Iceberg REST catalog, Spark jars):
a Java executable, Maven Central resolution into a cache outside the repository, and port/pid checks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from streamsvc.errors import ConfigError


def java_executable(tool: str = "java") -> str:
    """`$JAVA_HOME/bin/<tool>` or `<tool>` on PATH (Java 17+); `tool` may be `javac`."""
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / tool) if java_home else shutil.which(tool)
    if not found:
        raise ConfigError(f"a JDK 17+ ({tool}) is needed for the dev stack; install one or set JAVA_HOME")
    return found


def maven_copy_dependencies(pom: str, build_dir: Path, out_dir: Path) -> None:
    """Resolve the dependencies of `pom` (XML text) from Maven Central with `mvn` into `out_dir`."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise ConfigError("Maven (`mvn`) is needed to fetch jars from Maven Central; install it (apt: maven)")
    build_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "pom.xml").write_text(pom)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(build_dir / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={out_dir}",
        "-DincludeScope=runtime",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"mvn could not resolve {build_dir / 'pom.xml'}:\n{done.stdout}\n{done.stderr}")


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def read_pid(pid_file: Path) -> int | None:
    """The pid in `pid_file` when that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def stop_pid(pid_file: Path, wait_s: float = 60.0) -> int | None:
    """SIGTERM the process in `pid_file` (SIGKILL after `wait_s`); returns its pid, None if none ran."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and read_pid(pid_file):
        _reap(pid)
        time.sleep(0.2)
    if read_pid(pid_file):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return pid


def _reap(pid: int) -> None:
    """Collect `pid` if it is our own exited child (started in this process), so it stops looking alive."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
