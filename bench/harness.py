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
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench import ROOT, stats
from bench.engines import DEFAULT_ENGINES, ENGINES, Ctx, Engine
from bench.nexmark import Bid, bids
from bench.procs import Child
from bench.report import Row, chart, latency_markdown, machine, markdown, summarise
from streamsvc.dev import kafka
from streamsvc.runtime.topics import admin_client, delete_topics, ensure_topics

RESULTS = ROOT / "bench" / "results"


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


# ------------------------------------------------------------------------------------------- one run


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
        ctx = dataclasses.replace(ctx, source=source, records=min(ctx.records, args.live_records))
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
        _produce_bid(producer, ctx.source, bid, part)
        per_partition[part].append((bid.auction, bid.date_time, time.time()))
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(60)
    return per_partition, behind


def _produce_bid(producer: Producer, topic: str, bid: Bid, partition: int) -> None:
    """Produce one bid as JSON keyed by its auction, waiting while the producer's queue is full."""
    while True:
        try:
            producer.produce(
                topic, orjson.dumps(bid.to_json_dict()), str(bid.auction).encode(), partition=partition
            )
            return
        except BufferError:
            producer.poll(0.01)


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
        _produce_bid(producer, ctx.source, bid, part)
    producer.flush(120)
    print(f"  preloaded {ctx.records:,} bids in {time.monotonic() - started:.1f}s", flush=True)
    return stats.oracle(per_partition)


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
        "produced live",
    )
    p.add_argument(
        "--live-records",
        type=int,
        default=12_000,
        help="bids per repetition for engines fed live (default 12,000: a minute at 200 events/s; "
        "--records if smaller)",
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
