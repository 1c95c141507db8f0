"""`bench/run`: Nexmark Q5-lite on every engine, one command, one run (BRIEF §4, issue 12 part 4).

Pre-loads deterministic Nexmark bids (bench/nexmark.py, partition = auction % partitions, keyed by
auction) on one broker, then runs each engine in its own process, rotating the order across
repetitions, and reports medians with min-max. Every engine's output is checked against an offline
computation (bench/stats.py); a wrong result is reported as wrong, never as a time.

The harness tails each engine's output topic with a read_committed consumer: a result counts when it
is visible there. The active period is first record consumed (reported by the engine) to the last
result visible. CPU and peak RSS are read from /proc for the engine's whole process tree.
JVM peers run the job twice in one JVM: the first pass is reported "cold" (process start to its last
result), the second "warm" (first record to last result of the second pass).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench import stats
from bench.nexmark import bids
from streamsvc.dev import kafka
from streamsvc.runtime.topics import admin_client, delete_topics, ensure_topics

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("STREAMSVC_BENCH_CACHE", Path.home() / ".cache" / "streamsvc" / "bench"))
PEERS_VENV = ROOT / ".venv-peers"
RESULTS = ROOT / "bench" / "results"
TICK = os.sysconf("SC_CLK_TCK")
FLINK_CONNECTOR = ("org.apache.flink", "flink-sql-connector-kafka", "5.0.0-2.2")


# ---------------------------------------------------------------------------------------------- /proc


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _cpu_and_hwm(pid: int) -> tuple[float, float] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        hwm = 0.0
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
                    break
    except (OSError, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, hwm


class TreeSampler(threading.Thread):
    """Samples utime+stime and VmHWM of a process and all its descendants every `interval` seconds."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.cpu: dict[int, float] = {}
        self.hwm: dict[int, float] = {}
        self.series: list[tuple[float, float]] = []  # (wall time, CPU s of the tree so far)
        self.done = threading.Event()

    def sample(self) -> None:
        tree, pids, stack = _children(), [], [self.root]
        while stack:
            pid = stack.pop()
            pids.append(pid)
            stack.extend(tree.get(pid, []))
        for pid in pids:
            got = _cpu_and_hwm(pid)
            if got is not None:
                self.cpu[pid] = max(self.cpu.get(pid, 0.0), got[0])
                self.hwm[pid] = max(self.hwm.get(pid, 0.0), got[1])
        self.series.append((time.time(), sum(self.cpu.values())))

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval)

    @property
    def peak_rss_mb(self) -> float:
        return sum(self.hwm.values())


# ------------------------------------------------------------------------------------------ the tail


class Tail(threading.Thread):
    """read_committed consumer of the output topics: (key, start, end, count) and when each was visible."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-tail-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 20,
            }
        )
        assignment = []
        for topic in topics:
            meta = self.consumer.list_topics(topic, timeout=30)
            assignment += [TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions]
        self.consumer.assign(assignment)
        self.got: dict[str, list[tuple[str, int, int, int, float]]] = {t: [] for t in topics}
        self.done = threading.Event()
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.done.is_set():
            for msg in self.consumer.consume(num_messages=5000, timeout=0.1):
                if msg.error() is not None:
                    continue
                now = time.time()
                try:
                    v = orjson.loads(msg.value() or b"null")
                    key = (msg.key() or b"").decode()
                    self.got[msg.topic() or ""].append(
                        (key, int(v["start"]), int(v["end"]), int(v["value"]), now)
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    self.bad.append(f"{exc!r}: {msg.value()!r}"[:200])
        self.consumer.close()

    def count(self, topic: str) -> int:
        return len(self.got[topic])

    def last_at(self, topic: str) -> float:
        got = self.got[topic]
        return max(r[4] for r in got) if got else math.nan


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


# ------------------------------------------------------------------------------------------- one run


@dataclass
class Row:
    engine: str
    label: str
    rep: int
    status: str  # "ok", "wrong", "not run: ..." or "failed: ..."
    records: int = 0
    active_s: float = math.nan
    events_per_s: float = math.nan
    cpu_active_s: float = math.nan
    cpu_total_s: float = math.nan
    per_cpu_active: float = math.nan
    per_cpu_total: float = math.nan
    peak_rss_mb: float = math.nan
    gate: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Child:
    """An engine process: its stdout lines stamped with wall time, its process tree sampled."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("wb")
        self.started = time.time()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=ROOT,
        )
        self.lines: list[tuple[float, str]] = []
        self.sampler = TreeSampler(self.proc.pid)
        self.sampler.start()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.cpu_rusage = 0.0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.time(), raw.decode(errors="replace").rstrip("\n")))
            self.log.write(raw)

    def send(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()

    def events(self) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for t, line in list(self.lines):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append((t, orjson.loads(line)))
        return out

    def first_record_at(self, pass_no: int) -> float:
        for t, ev in self.events():
            if ev.get("event") == "first_record" and int(ev.get("pass", 0)) == pass_no:
                return float(ev.get("at", t))
            if ev.get("event") == "caught_up" or "active_s" in ev:  # streamsvc, raw consume
                return float(ev.get("first_at", t - float(ev["active_s"])))
        return math.nan

    def alive(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float = 60.0) -> int:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        deadline = time.time() + timeout
        while self.alive() and time.time() < deadline:
            time.sleep(0.1)
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        _, status, usage = os.wait4(self.proc.pid, 0) if self.proc.returncode is None else (0, 0, None)
        if usage is not None:
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_rusage = usage.ru_utime + usage.ru_stime
        self.sampler.done.set()
        self.sampler.join()
        self.sampler.sample()
        self.reader.join(5)
        self.log.close()
        return self.proc.returncode or 0


def wait_for_results(
    tail: Tail, topic: str, child: Child, expected: stats.Oracle, quiet_s: float, cap_s: float
) -> None:
    """Until every closed window is visible, or nothing new arrived for `quiet_s` after the required
    windows (`cap_s` before them, or the engine died)."""
    start, last_n, last_change = time.time(), -1, time.time()
    while True:
        n = tail.count(topic)
        now = time.time()
        if n != last_n:
            last_n, last_change = n, now
        if n >= expected.n_closed:
            time.sleep(0.5)  # duplicates would show up right behind
            return
        limit = quiet_s if n >= expected.n_required else cap_s
        if now - last_change > limit or (not child.alive() and now - last_change > 3) or now - start > 3600:
            return
        time.sleep(0.05)


def run_engine(
    engine: Engine, ctx: Ctx, rep: int, expected: stats.Oracle, admin: Any, args: argparse.Namespace
) -> list[Row]:
    app = f"bench-{ctx.run}-{engine.name}-{rep}"
    if engine.fed_live:
        source = f"bench.{ctx.run}.{engine.name}.{rep}.bids"
        ensure_topics(admin, {source: ctx.partitions})
        ctx = dataclasses.replace(ctx, source=source)
    outputs = (
        [f"bench.{ctx.run}.{engine.name}.{rep}.{p or 'out'}" for p in engine.passes] if engine.output else []
    )
    if outputs:
        ensure_topics(admin, {t: ctx.partitions for t in outputs})
    assert engine.command is not None
    cmd, env = engine.command(ctx, outputs, app)
    log = ctx.logs / f"{engine.name}-{rep}.log"
    tail = Tail(ctx.bootstrap, outputs) if outputs else None
    if tail:
        tail.start()
    child = Child(cmd, env, log)
    labels = [f"{engine.label}, {p}" if p else engine.label for p in engine.passes]
    died = False
    try:
        if engine.fed_live:
            labels = [f"{label}, fed live at {args.live_rate:,.0f} events/s" for label in labels]
            expected = feed_live(ctx, child, args.live_rate, args.seed + 2 + rep, args.cap)
        for i, topic in enumerate(outputs):
            wait_for_results(tail, topic, child, expected, args.quiet, args.cap) if tail else None
            died = died or not child.alive()
            if engine.driven:
                child.send("next" if i + 1 < len(outputs) else "stop")
        code = child.finish(timeout=args.cap)
    finally:
        if tail:
            tail.done.set()
            tail.join(10)
    cpu_total = max(child.sampler.series[-1][1] if child.sampler.series else 0.0, child.cpu_rusage)
    rows = []
    for i, label in enumerate(labels):
        row = Row(
            engine.name + (f"-{engine.passes[i]}" if engine.passes[i] else ""), label, rep, "ok", ctx.records
        )
        row.peak_rss_mb = child.sampler.peak_rss_mb
        row.cpu_total_s = cpu_total
        row.per_cpu_total = ctx.records * len(labels) / cpu_total if cpu_total else math.nan
        first = child.first_record_at(i)
        if tail:
            got = tail.got[outputs[i]]
            verdict = stats.gate(expected, [r[:4] for r in got])
            row.gate = verdict.text
            last = tail.last_at(outputs[i])
            if not verdict.ok:
                row.status = "wrong"
        else:
            last = next((t for t, ev in child.events() if "active_s" in ev), math.nan)
        if engine.passes[i] == "cold":  # start-up included: from process start
            first = child.started
        if code != 0 and (died or not engine.driven):
            row.status = (
                f"failed: exit {code} (see {log.relative_to(ROOT) if log.is_relative_to(ROOT) else log})"
            )
        if (math.isnan(first) or math.isnan(last)) and row.status == "ok":
            row.status = f"failed: no {'first record' if math.isnan(first) else 'result'} seen (see {log})"
        if row.status != "ok":
            rows.append(row)
            continue
        row.active_s = max(last - first, 1e-6)
        row.events_per_s = ctx.records / row.active_s
        series = child.sampler.series
        row.cpu_active_s = stats.interpolate(series, last) - stats.interpolate(series, first)
        if engine.passes[i] == "cold":
            row.cpu_active_s = stats.interpolate(series, last)
        row.per_cpu_active = ctx.records / row.cpu_active_s if row.cpu_active_s > 0 else math.nan
        rows.append(row)
    return rows


def run_latency(
    engine: Engine, ctx: Ctx, rate: float, seconds: float, admin: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """p99 result latency at `rate` events/s: bids are produced live (event time = now) while the engine
    runs; a window result's latency is the wall time it becomes visible to a read_committed consumer
    minus the wall time its closing record was appended (see stats.closing_times). Windows closing in
    the first `WARMUP_S` after producing began are left out (the engine's start-up)."""
    live = Ctx(
        ctx.bootstrap,
        f"bench.{ctx.run}.live.{engine.name}",
        int(rate * seconds),
        ctx.partitions,
        ctx.batch_size,
        ctx.run,
        ctx.work,
        ctx.logs,
        live=True,
    )
    app = f"bench-{ctx.run}-live-{engine.name}"
    output = f"bench.{ctx.run}.live.{engine.name}.out"
    ensure_topics(admin, {live.source: ctx.partitions, output: ctx.partitions})
    tail = Tail(ctx.bootstrap, [output])
    tail.start()
    assert engine.command is not None
    cmd, env = engine.command(live, [output], app)
    child = Child(cmd, env, ctx.logs / f"{engine.name}-live.log")
    t0 = time.time()
    per_partition, behind = produce_live(live, rate, args.seed + 1)
    time.sleep(5)
    if engine.driven:
        child.send("stop")
    child.proc.terminate() if not engine.driven else None
    child.finish(timeout=30)
    tail.done.set()
    tail.join(10)
    cutoff = t0 + WARMUP_S
    closing = stats.closing_times(per_partition)
    oracle = stats.oracle({p: [(a, t) for a, t, _ in recs] for p, recs in per_partition.items()})
    got = tail.got[output]
    verdict = stats.gate(oracle, [r[:4] for r in got])
    lat = [
        r[4] - closing[(r[0], r[1])]
        for r in got
        if (r[0], r[1]) in closing and closing[(r[0], r[1])] >= cutoff
    ]
    return {
        "engine": engine.name,
        "label": engine.label,
        "rate": rate,
        "achieved_rate": live.records / (time.time() - t0 - 5) if live.records else 0.0,
        "producer_max_behind_s": behind,
        "windows": len(lat),
        "p50_ms": 1000 * stats.percentile(lat, 50),
        "p99_ms": 1000 * stats.percentile(lat, 99),
        "max_ms": 1000 * max(lat) if lat else math.nan,
        "gate": verdict.text,
    }


WARMUP_S = 8.0


def produce_live(ctx: Ctx, rate: float, seed: int) -> tuple[dict[int, list[tuple[int, int, float]]], float]:
    """Produce `ctx.records` bids into `ctx.source` at `rate` events/s, event time = now (the generator's
    up to 500 ms delay included); returns partition -> [(auction, event time ms, append wall time s)] and
    how far (s) the producer fell behind its schedule at worst."""
    per_partition: dict[int, list[tuple[int, int, float]]] = {i: [] for i in range(ctx.partitions)}
    producer = Producer({"bootstrap.servers": ctx.bootstrap, "linger.ms": 5})
    now_ms = int(time.time() * 1000)
    t0 = time.time()
    behind = 0.0
    for i, bid in enumerate(
        bids(ctx.records, seed=seed, events_per_second=max(1, int(rate)), start_ms=now_ms)
    ):
        due = t0 + i / rate
        wait = due - time.time()
        if wait > 0.002:
            time.sleep(wait)
        behind = max(behind, -wait)
        part = bid.auction % ctx.partitions
        while True:
            try:
                producer.produce(
                    ctx.source, orjson.dumps(bid.to_json_dict()), str(bid.auction).encode(), partition=part
                )
                break
            except BufferError:
                producer.poll(0.01)
        per_partition[part].append((bid.auction, bid.date_time, time.time()))
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(60)
    return per_partition, behind


def feed_live(ctx: Ctx, child: Child, rate: float, seed: int, cap_s: float) -> stats.Oracle:
    """For an engine fed live: wait for its "ready" line (partitions assigned; `cap_s` at most), produce
    its bids live, and return the offline result of what was produced, every window closed."""
    deadline = time.time() + cap_s
    while child.alive() and time.time() < deadline:
        if any(ev.get("event") == "ready" for _, ev in child.events()):
            break
        time.sleep(0.1)
    per_partition, behind = produce_live(ctx, rate, seed)
    if behind > 1.0:
        print(f"(producer fell {behind:.1f} s behind its schedule)", end=" ", flush=True)
    return stats.closed_by_wall_clock(
        stats.oracle({p: [(a, t) for a, t, _ in recs] for p, recs in per_partition.items()})
    )


def preload(ctx: Ctx, admin: Any, seed: int) -> stats.Oracle:
    ensure_topics(admin, {ctx.source: ctx.partitions})
    per_partition: dict[int, list[tuple[int, int]]] = {i: [] for i in range(ctx.partitions)}
    producer = Producer({"bootstrap.servers": ctx.bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
    started = time.monotonic()
    for bid in bids(ctx.records, seed=seed):
        part = bid.auction % ctx.partitions
        per_partition[part].append((bid.auction, bid.date_time))
        while True:
            try:
                producer.produce(
                    ctx.source, orjson.dumps(bid.to_json_dict()), str(bid.auction).encode(), partition=part
                )
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    print(f"  preloaded {ctx.records:,} bids in {time.monotonic() - started:.1f}s", flush=True)
    return stats.oracle(per_partition)


# ------------------------------------------------------------------------------------------- reports

COLUMNS = [
    ("events/s (active)", "events_per_s", ",.0f"),
    ("events per active CPU-s", "per_cpu_active", ",.0f"),
    ("events per process CPU-s", "per_cpu_total", ",.0f"),
    ("CPU s (active)", "cpu_active_s", ",.1f"),
    ("peak RSS MB", "peak_rss_mb", ",.0f"),
]


def summarise(rows: list[Row], order: list[str]) -> list[dict[str, Any]]:
    out = []
    names = []
    for name in order:
        for r in rows:
            if (r.engine == name or r.engine.startswith(name + "-")) and r.engine not in names:
                if name == "streamsvc-eos" and r.engine.startswith("streamsvc-eos-"):
                    continue
                if name == "streamsvc-alo" and r.engine.startswith("streamsvc-alo-"):
                    continue
                names.append(r.engine)
    for name in names:
        mine = [r for r in rows if r.engine == name]
        ok = [r for r in mine if r.status == "ok"]
        entry: dict[str, Any] = {"engine": name, "label": mine[0].label, "reps": len(mine), "ok": len(ok)}
        bad = [r for r in mine if r.status != "ok"]
        entry["status"] = (
            "ok"
            if not bad
            else bad[0].status
            if not ok
            else f"{len(bad)} of {len(mine)} reps: {bad[0].status}"
        )
        entry["gate"] = sorted({r.gate for r in mine if r.gate})
        for _, key, _ in COLUMNS:
            s = stats.spread([getattr(r, key) for r in ok])
            entry[key] = {"median": s.median, "min": s.lo, "max": s.hi}
        out.append(entry)
    return out


def markdown(summary: list[dict[str, Any]]) -> str:
    lines = ["| engine | " + " | ".join(c for c, _, _ in COLUMNS) + " | correctness gate |"]
    lines.append("|---|" + "---:|" * len(COLUMNS) + "---|")
    for e in summary:
        if not e["ok"]:
            why = "; ".join(e["gate"]) if e["status"] == "wrong" else e["status"]
            lines.append(f"| {e['label']} | " + " | ".join("-" for _ in COLUMNS) + f" | {why} |")
            continue
        cells = [stats.Spread(e[k]["median"], e[k]["min"], e[k]["max"]).fmt(spec) for _, k, spec in COLUMNS]
        gate = "; ".join(e["gate"]) if e["gate"] else "n/a (no output)"
        if e["status"] != "ok":
            gate += f"; {e['status']}"
        lines.append(f"| {e['label']} | " + " | ".join(cells) + f" | {gate} |")
    return "\n".join(lines)


def latency_markdown(latency: list[dict[str, Any]]) -> str:
    lines = [
        "| engine (latency phase) | input events/s (half its max) | windows | p50 ms | p99 ms | max ms "
        "| correctness gate |"
    ]
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for lat in latency:
        if "error" in lat:
            lines.append(f"| {lat['label']} | - | - | - | - | - | failed: {lat['error']} |")
            continue
        lines.append(
            f"| {lat['label']} | {lat['rate']:,.0f} | {lat['windows']:,} | {lat['p50_ms']:,.0f} "
            f"| {lat['p99_ms']:,.0f} "
            f"| {lat['max_ms']:,.0f} | {lat['gate']} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GB, {system}"


def chart(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in summary if e["ok"]]
    labels = [e["label"] for e in shown]
    med = [e["per_cpu_active"]["median"] for e in shown]
    lo = [m - e["per_cpu_active"]["min"] for m, e in zip(med, shown, strict=True)]
    hi = [e["per_cpu_active"]["max"] - m for m, e in zip(med, shown, strict=True)]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.6))
    colors = [
        "#888888" if e["engine"] == "raw" else "#1f77b4" if e["engine"].startswith("streamsvc") else "#ff7f0e"
        for e in shown
    ]
    ax.barh(labels, med, xerr=[lo, hi], color=colors, capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel("events per CPU-second of the engine's process tree, active period (median, min-max)")
    ax.set_title(title, fontsize=10)
    for y, m in enumerate(med):
        ax.text(m, y, f" {m:,.0f}", va="center", fontsize=8)
    not_run = [e["label"] + ": " + e["status"][:70] for e in summary if not e["ok"]]
    if not_run:
        fig.text(0.01, 0.01, "not shown: " + "; ".join(not_run), fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.05 if not_run else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--records", type=int, default=500_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--engines", default=DEFAULT_ENGINES, help=f"comma-separated, of: {','.join(ENGINES)}")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument(
        "--quiet",
        type=float,
        default=8.0,
        help="s without new results (after the required ones) ending a pass",
    )
    p.add_argument(
        "--cap",
        type=float,
        default=60.0,
        help="s without new results before the required ones ending a pass",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON and markdown results")
    p.add_argument("--chart", type=Path, help="write the events-per-CPU-s chart (PNG) here")
    p.add_argument(
        "--latency-engines",
        default="streamsvc-eos,streamsvc-eos-100ms",
        help="engines whose p99 result latency is measured at half their median events/s ('' for none)",
    )
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument(
        "--live-rate",
        type=float,
        default=200.0,
        help="events/s at which the bids of engines that close windows on wall-clock time (faust) are "
        "produced live, --records of them per repetition",
    )
    p.add_argument("--keep", action="store_true", help="keep the topics and the work directory")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        p.error(f"unknown engines {unknown}; known: {', '.join(ENGINES)}")
    bootstrap = os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS") or kafka.start(kafka.LocalKafka.from_env())
    admin = admin_client(bootstrap)
    run = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
    work = Path(tempfile.mkdtemp(prefix=f"bench-run-{run}-"))
    logs = args.out / "logs" / run
    logs.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(bootstrap, f"bench.{run}.bids", args.records, args.partitions, args.batch_size, run, work, logs)
    print(
        f"bench/run {run}: {args.records:,} bids, {args.partitions} partitions, {args.reps} reps, "
        f"engines {names}",
        flush=True,
    )

    rows: list[Row] = []
    ready: list[str] = []
    for name in names:
        engine = ENGINES[name]
        reason = engine.setup() if engine.setup else None
        if reason:
            print(f"  {name}: {reason}", flush=True)
            for pass_ in engine.passes:
                rows.append(
                    Row(
                        name + (f"-{pass_}" if pass_ else ""),
                        f"{engine.label}, {pass_}" if pass_ else engine.label,
                        0,
                        reason,
                    )
                )
        else:
            ready.append(name)
    expected = preload(ctx, admin, args.seed)
    print(
        f"  offline result: {expected.n_closed:,} closed windows "
        f"({expected.n_required:,} closed in every partition)",
        flush=True,
    )
    for rep in range(args.reps):
        for name in stats.rotation(ready, rep):
            print(f"  rep {rep + 1}/{args.reps}: {name} ...", end=" ", flush=True)
            try:
                got = run_engine(ENGINES[name], ctx, rep, expected, admin, args)
            except Exception as exc:
                got = [Row(name, ENGINES[name].label, rep, f"failed: {exc!r}"[:300])]
            rows.extend(got)
            print(
                "; ".join(
                    f"{r.engine} {r.status} {r.events_per_s:,.0f} ev/s {r.per_cpu_active:,.0f} ev/CPU-s"
                    for r in got
                ),
                flush=True,
            )

    summary = summarise(rows, names)
    table = markdown(summary)
    latency = []
    for name in [n.strip() for n in args.latency_engines.split(",") if n.strip() in ready]:
        entry = next((e for e in summary if e["engine"] == name and e["ok"]), None)
        if entry is None:
            continue
        rate = entry["events_per_s"]["median"] / 2
        print(
            f"  latency: {name} at {rate:,.0f} events/s for {args.latency_seconds:.0f} s ...",
            end=" ",
            flush=True,
        )
        try:
            lat = run_latency(ENGINES[name], ctx, rate, args.latency_seconds, admin, args)
        except Exception as exc:
            lat = {"engine": name, "label": ENGINES[name].label, "error": repr(exc)[:300]}
        latency.append(lat)
        print(
            f"p99 {lat.get('p99_ms', math.nan):,.0f} ms over {lat.get('windows', 0)} windows; "
            f"{lat.get('gate', lat.get('error'))}",
            flush=True,
        )
    if latency:
        table += "\n\n" + latency_markdown(latency)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "run": run,
        "command": "bench/run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "records": args.records,
        "reps": args.reps,
        "partitions": args.partitions,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "closed_windows": expected.n_closed,
    }
    (args.out / f"q5-{run}.json").write_text(
        json.dumps(
            {**meta, "summary": summary, "latency": latency, "rows": [asdict(r) for r in rows]},
            indent=1,
            default=str,
        )
    )
    (args.out / f"q5-{run}.md").write_text(
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}\n\n{table}\n"
    )
    print()
    print(table)
    print(f"\nresults: {args.out / f'q5-{run}.json'}")
    if args.chart:
        chart(
            summary,
            args.chart,
            f"Nexmark Q5-lite, {args.records:,} bids, {args.reps} reps, one run ({meta['date']})",
        )
        print(f"chart: {args.chart}")
    if not args.keep:
        with contextlib.suppress(Exception):
            mine = [t for t in admin.list_topics(timeout=30).topics if run in t]
            delete_topics(admin, mine)
        shutil.rmtree(work, ignore_errors=True)
    wrong = [e["engine"] for e in summary if e["engine"].startswith("streamsvc") and e["status"] == "wrong"]
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
