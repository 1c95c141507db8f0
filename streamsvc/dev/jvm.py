"""What the dev services on the JVM share: finding a Java, resolving Maven artifacts, pid-file processes."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from streamsvc.errors import ConfigError

# Where Linux distributions (and Temurin's packages) and macOS install JDKs.
JVM_DIRS = (Path("/usr/lib/jvm"), Path("/usr/local/lib/jvm"), Path("/Library/Java/JavaVirtualMachines"))
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def say(component: str, msg: str) -> None:
    print(f"[streamsvc dev {component}] {msg}", flush=True)


@functools.cache
def java_major_version(java: str) -> int | None:
    """The feature release of `java` (8, 17, 21, 25...), None when it does not run."""
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _VERSION.search(done.stderr + done.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def _java_candidates() -> Iterator[str]:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        yield str(Path(java_home) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        yield on_path
    for jvm_dir in JVM_DIRS:
        if jvm_dir.is_dir():
            for home in sorted(jvm_dir.iterdir(), reverse=True):
                for java in (home / "bin" / "java", home / "Contents" / "Home" / "bin" / "java"):
                    if java.is_file():
                        yield str(java)


def find_java(min_version: int, needed_for: str) -> tuple[str, int]:
    """`(java executable, major version)`: JAVA_HOME, then `java` on PATH, then every installed JDK.

    The first one at `min_version` or newer wins, so JAVA_HOME is honoured whenever it is recent enough.
    """
    seen: dict[str, int | None] = {}
    for java in _java_candidates():
        if java in seen:
            continue
        seen[java] = major = java_major_version(java)
        if major is not None and major >= min_version:
            return java, major
    found = ", ".join(f"{java} ({major or 'does not run'})" for java, major in seen.items()) or "none"
    raise ConfigError(
        f"Java {min_version}+ is needed for {needed_for}; found: {found}. "
        f"Install a JDK {min_version}+ or point JAVA_HOME at one"
    )


def run_mvn(args: list[str], what: str, cwd: Path | None = None) -> None:
    """Run Maven in batch mode; a failure raises with Maven's output."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError(f"Maven (`mvn`) is needed to resolve {what} from Maven Central; install it")
    done = subprocess.run([mvn, "-q", "-B", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"mvn could not resolve {what}:\n{done.stdout}\n{done.stderr}")


def maven_artifact(coordinates: str, dest: Path) -> Path:
    """Download one artifact, `group:artifact:version[:type[:classifier]]`, into `dest`; returns its path."""
    _group, artifact, version, *rest = coordinates.split(":")
    kind = rest[0] if rest else "jar"
    classifier = f"-{rest[1]}" if len(rest) > 1 else ""
    target = dest / f"{artifact}-{version}{classifier}.{kind}"
    if not target.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        # Run in `dest`: a pom.xml in the caller's directory would otherwise become Maven's project.
        run_mvn(
            ["dependency:copy", f"-Dartifact={coordinates}", f"-DoutputDirectory={dest}"], coordinates, dest
        )
    if not target.is_file():
        raise ConfigError(f"mvn reported success but {target} is missing")
    return target


def java_tool(tool: str, min_version: int = 17, needed_for: str = "the dev stack") -> str:
    """A JDK tool (`java`, `javac`) of a Java >= `min_version`, beside the `java` `find_java` picks."""
    java, _ = find_java(min_version, needed_for)
    sibling = Path(java).with_name(tool)
    if sibling.exists():
        return str(sibling)
    found = shutil.which(tool)
    if not found:
        raise ConfigError(
            f"{tool} (a JDK {min_version}+) is needed for {needed_for}; install one or set JAVA_HOME"
        )
    return found


def maven_copy_dependencies(pom: str, build_dir: Path, out_dir: Path) -> None:
    """Resolve the runtime dependencies of `pom` (XML text) from Maven Central into `out_dir`."""
    build_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "pom.xml").write_text(pom)
    run_mvn(
        [
            "-f",
            str(build_dir / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={out_dir}",
            "-DincludeScope=runtime",
        ],
        f"the dependencies of {build_dir / 'pom.xml'}",
    )


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def running_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` when that process is alive."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None  # our own child, exited (and now reaped rather than left a zombie)
    except ChildProcessError:
        pass  # not our child: started by another process (the usual case)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


def stop_pid(pid_file: Path, wait_s: float, log: Callable[[str], None]) -> bool:
    """SIGTERM the process of `pid_file`, SIGKILL it after `wait_s`; False when none was running."""
    pid = running_pid(pid_file)
    if pid is None:
        log("not running")
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and running_pid(pid_file):
        time.sleep(0.3)
    if running_pid(pid_file):
        log(f"pid {pid} ignored SIGTERM for {wait_s:.0f}s; killing it")
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    log(f"stopped (pid {pid})")
    return True


def spawn_until_ready(
    command: list[str],
    what: str,
    pid_file: Path,
    output: Path,
    ready: Callable[[], bool],
    wait_s: float,
    log: Callable[[str], None],
    cwd: Path | None = None,
) -> None:
    """Start `command` in its own session (it outlives this process), record its pid in `pid_file`, and
    return once `ready()`; raise when it exits first or `wait_s` passes. Its output goes to `output`."""
    with output.open("ab") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    pid_file.write_text(str(proc.pid))
    log(f"started {what} (pid {proc.pid}); waiting for it to answer")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"{what} exited with code {proc.returncode}; see {output}")
        if ready():
            return
        time.sleep(0.5)
    raise ConfigError(f"{what} did not answer within {wait_s:.0f}s; see {output}")
