"""The engines `bench/run` compares: how each is set up (venv, Maven build, connector jar) and started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import ROOT

CACHE = Path(os.environ.get("STREAMSVC_BENCH_CACHE", Path.home() / ".cache" / "streamsvc" / "bench"))
PEERS_VENV = ROOT / ".venv-peers"
FLINK_CONNECTOR = ("org.apache.flink", "flink-sql-connector-kafka", "5.0.0-2.2")


# -------------------------------------------------------------------------------------------- engines


@dataclass
class Ctx:
    bootstrap: str
    source: str
    records: int
    partitions: int
    batch_size: int
    run: str
    work: Path
    logs: Path
    live: bool = False  # the latency phase: input still being produced, engines run until stopped


@dataclass
class Engine:
    """One engine: a command line per (context, output topics); `passes` names the measured passes."""

    name: str
    label: str
    command: Callable[[Ctx, list[str], str], tuple[list[str], dict[str, str]]] | None
    passes: tuple[str, ...] = ("",)  # one output topic per pass; ("cold", "warm") for JVM peers
    setup: Callable[[], str | None] | None = None  # returns "not run: reason" or None when ready
    driven: bool = False  # reads "next"/"stop" lines on stdin to end a pass
    output: bool = True  # raw consume has no output
    # Fed live: the engine closes windows on wall-clock time (faust), so each repetition produces its own
    # bids into a fresh topic while the engine runs, event time = now, at `--live-rate` events/s; its
    # offline result is computed from what was produced (every window closed: the clock passes them all).
    fed_live: bool = False


def _py(name: str) -> Path:
    return PEERS_VENV / name / "bin" / "python"


def _ensure_venv(name: str) -> Callable[[], str | None]:
    def setup() -> str | None:
        python, req = _py(name), ROOT / "bench" / "peers" / f"requirements-{name}.txt"
        stamp = PEERS_VENV / name / ".installed"
        if stamp.exists() and stamp.read_text() == req.read_text():
            return None
        print(f"  creating .venv-peers/{name} from {req.relative_to(ROOT)} ...", flush=True)
        base = shutil.which("python3.11") or sys.executable
        steps = [
            [base, "-m", "venv", str(PEERS_VENV / name)],
            [str(python), "-m", "pip", "install", "-q", "-r", str(req)],
        ]
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True)
            if proc.returncode != 0:
                return f"not run: {' '.join(step[:4])} failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
        stamp.write_text(req.read_text())
        return None

    return setup


def _kstreams_jar() -> Path:
    return CACHE / "kstreams-q5.jar"


def _setup_kstreams() -> str | None:
    project = ROOT / "bench" / "peers" / "kstreams"
    jar, stamp = _kstreams_jar(), CACHE / "kstreams-q5.src"
    sources = "".join(
        p.read_text() for p in sorted(project.rglob("*")) if p.is_file() and "target" not in p.parts
    )
    if jar.exists() and stamp.exists() and stamp.read_text() == sources:
        return None
    if shutil.which("mvn") is None:
        return "not run: mvn is not on PATH"
    print("  building bench/peers/kstreams (mvn -q package) ...", flush=True)
    build_dir = CACHE / "kstreams-target"
    proc = subprocess.run(
        ["mvn", "-q", "-B", "package", f"-DbuildDir={build_dir}"], cwd=project, capture_output=True, text=True
    )
    built = sorted(build_dir.glob("kstreams-q5-*.jar"))
    if proc.returncode != 0 or not built:
        return f"not run: mvn package failed: {(proc.stdout + proc.stderr).strip()[-400:]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.copy(built[-1], jar)
    stamp.write_text(sources)
    return None


def _flink_connector() -> Path:
    _group, artifact, version = FLINK_CONNECTOR
    return CACHE / f"{artifact}-{version}.jar"


def _setup_flink() -> str | None:
    venv = _ensure_venv("flink")()
    if venv:
        return venv
    jar = _flink_connector()
    if jar.exists():
        return None
    group, artifact, version = FLINK_CONNECTOR
    print(f"  fetching {artifact}-{version}.jar from Maven Central (mvn dependency:copy) ...", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={group}:{artifact}:{version}",
            f"-DoutputDirectory={CACHE}",
        ],
        capture_output=True,
        text=True,
        cwd=CACHE,
    )
    if proc.returncode != 0 or not jar.exists():
        why = (proc.stdout + proc.stderr).strip()[-300:]
        return f"not run: fetching the Flink Kafka connector failed: {why}"
    return None


def _streamsvc(
    guarantee: str, interval_ms: int
) -> Callable[[Ctx, list[str], str], tuple[list[str], dict[str, str]]]:
    def command(ctx: Ctx, outputs: list[str], app: str) -> tuple[list[str], dict[str, str]]:
        env = {
            "STREAMSVC_BOOTSTRAP_SERVERS": ctx.bootstrap,
            "STREAMSVC_APP_ID": app,
            "STREAMSVC_INSTANCE_ID": "bench-0",
            "STREAMSVC_GUARANTEE": guarantee,
            "STREAMSVC_COMMIT_INTERVAL_MS": str(interval_ms),
            "STREAMSVC_BATCH_SIZE": str(ctx.batch_size),
            "STREAMSVC_TOPIC_BIDS": ctx.source,
            "STREAMSVC_TOPIC_BID_COUNTS": outputs[0],
            "STREAMSVC_STATE_DIR": str(ctx.work / app),
        }
        cmd = [sys.executable, "-m", "streamsvc.cli.main", "run", "topologies/nexmark_q5.py"]
        return cmd + ([] if ctx.live else ["--until-caught-up"]), env

    return command


def _raw(ctx: Ctx, outputs: list[str], app: str) -> tuple[list[str], dict[str, str]]:
    cmd = [sys.executable, "bench/raw_consume.py", "--bootstrap", ctx.bootstrap, "--topic", ctx.source]
    return [*cmd, "--records", str(ctx.records), "--batch", str(ctx.batch_size)], {}


def _peer_args(ctx: Ctx, outputs: list[str], app: str) -> list[str]:
    args = ["--bootstrap", ctx.bootstrap, "--source", ctx.source, "--outputs", ",".join(outputs)]
    return [*args, "--app-id", app, "--partitions", str(ctx.partitions), "--work", str(ctx.work / app)]


def _kstreams(ctx: Ctx, outputs: list[str], app: str) -> tuple[list[str], dict[str, str]]:
    return ["java", "-Xmx2g", "-jar", str(_kstreams_jar()), *_peer_args(ctx, outputs, app)], {}


def _flink(ctx: Ctx, outputs: list[str], app: str) -> tuple[list[str], dict[str, str]]:
    cmd = [str(_py("flink")), "bench/peers/flink_q5.py", *_peer_args(ctx, outputs, app)]
    return [*cmd, "--connector-jar", str(_flink_connector())], {}


def _python_peer(name: str, script: str) -> Callable[[Ctx, list[str], str], tuple[list[str], dict[str, str]]]:
    def command(ctx: Ctx, outputs: list[str], app: str) -> tuple[list[str], dict[str, str]]:
        return [str(_py(name)), script, *_peer_args(ctx, outputs, app)], {}

    return command


ENGINES = {
    e.name: e
    for e in [
        Engine("raw", "raw consume-and-discard (limit)", _raw, output=False),
        Engine("streamsvc-eos", "streamsvc EOS, 1 s commits", _streamsvc("exactly_once", 1000)),
        Engine("streamsvc-alo", "streamsvc at-least-once, 1 s commits", _streamsvc("at_least_once", 1000)),
        Engine("streamsvc-eos-100ms", "streamsvc EOS, 100 ms commits", _streamsvc("exactly_once", 100)),
        Engine(
            "streamsvc-alo-100ms", "streamsvc at-least-once, 100 ms commits", _streamsvc("at_least_once", 100)
        ),
        Engine(
            "kstreams",
            "Kafka Streams 4.1 EOS v2",
            _kstreams,
            passes=("cold", "warm"),
            setup=_setup_kstreams,
            driven=True,
        ),
        Engine(
            "flink",
            "Flink 2.2 SQL, EOS sink",
            _flink,
            passes=("cold", "warm"),
            setup=_setup_flink,
            driven=True,
        ),
        Engine(
            "quix",
            "Quix Streams 3.28 EOS",
            _python_peer("quix", "bench/peers/quix_q5.py"),
            setup=_ensure_venv("quix"),
            driven=True,
        ),
        Engine(
            "faust",
            "faust-streaming 0.15 exactly_once",
            _python_peer("faust", "bench/peers/faust_q5.py"),
            setup=_ensure_venv("faust"),
            driven=True,
            fed_live=True,
        ),
        Engine(
            "bytewax",
            "bytewax 0.21 (at-least-once)",
            _python_peer("bytewax", "bench/peers/bytewax_q5.py"),
            setup=_ensure_venv("bytewax"),
            driven=True,
        ),
    ]
}
DEFAULT_ENGINES = "raw,streamsvc-eos,streamsvc-alo,streamsvc-eos-100ms,kstreams,flink,quix,faust,bytewax"
