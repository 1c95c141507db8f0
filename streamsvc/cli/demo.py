"""`streamsvc demo`: the shop pipeline end to end on the local broker and registry (docs/demo.md).

Starts the broker and the registry when needed, creates the topics of the topology plan, registers the
schemas, generates shop traffic for about `--seconds` while the pipeline and its Iceberg sinks run in
this process, with a live progress line; then prints a summary and removes what it created (unless
`--keep`). Logs (librdkafka's included) go to `<dir>/demo.log`, not to the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from streamsvc.cli.generate import bootstrap_servers, registry_url
from streamsvc.generate.harness import ShopRun
from streamsvc.generate.shop import ShopConfig, shop_events
from streamsvc.generate.summary import WINDOW_TOPICS, dlq_reasons, invariant, lag, table_report, topic_counts


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the reference shop pipeline end to end on the local Kafka")
    p.add_argument("--records", type=int, default=30_000, help="generated events (after the snapshot)")
    p.add_argument("--seconds", type=float, default=60.0, help="spread the traffic over this long")
    p.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    p.add_argument("--malformed", type=float, default=0.03, help="share of poison records")
    p.add_argument("--start-ms", type=int, help="event time of the first record (default: an hour ago)")
    p.add_argument("--prefix", help="topic prefix (default demo.<timestamp>)")
    p.add_argument(
        "--dir", help="catalog, warehouse, state and demo.log (default ~/.cache/streamsvc/demo/...)"
    )
    p.add_argument("--port", type=int, default=-1, help="status page port (default: a free one; 0: none)")
    p.add_argument("--keep", action="store_true", help="keep the topics, subjects, tables and files")
    p.set_defaults(func=run)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _quiet(log: Path) -> Iterator[IO[str]]:
    """Send file descriptor 2 (librdkafka and structlog write there) to `log`; yield stdout. An
    exception is logged there in full and named on the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    with log.open("a") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield sys.stdout
        except Exception as exc:
            traceback.print_exc(file=sink)
            print(f"\nstreamsvc demo: error: {type(exc).__name__}: {exc} (details in {log})", flush=True)
            raise SystemExit(1) from exc
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def run(args: argparse.Namespace) -> int:
    bootstrap, url = bootstrap_servers(), registry_url()
    stamp = time.strftime("%Y%m%d%H%M%S")
    prefix = args.prefix or f"demo.{stamp}"
    work = Path(args.dir or Path.home() / ".cache" / "streamsvc" / "demo" / prefix)
    work.mkdir(parents=True, exist_ok=True)
    run = ShopRun(bootstrap, url, prefix, work, commit_interval_s=2.0)
    port = _free_port() if args.port < 0 else args.port
    with _quiet(work / "demo.log") as term:
        try:
            return _demo(run, args, port, term)
        finally:
            if not args.keep:
                left = run.cleanup()
                if left:
                    print(
                        f"consumer groups still held by departing members, left to expire: {left}", file=term
                    )
                shutil.rmtree(work, ignore_errors=True)


def _demo(run: ShopRun, args: argparse.Namespace, port: int, out: IO[str]) -> int:
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    say(f"streamsvc demo: the shop pipeline on {run.bootstrap}, registry {run.registry_url}")
    made = run.create_topics()
    ids = run.register_schemas()
    say(f"created {len(made)} topics under {run.prefix}.*, registered schemas {ids}")
    config = ShopConfig(
        records=args.records, seed=args.seed, malformed=args.malformed, start_ms=args.start_ms
    )
    events = shop_events(config)
    say(f"generating {len(events):,} records (seed {args.seed}) over ~{args.seconds:.0f}s")
    if port:
        say(f"status page while it runs: http://127.0.0.1:{port}/")
    pipeline = run.worker(until_caught_up=False, metrics_port=port)
    sinks = run.worker(until_caught_up=False, sinks=True)
    pipeline.start()
    sinks.start()
    started = time.monotonic()
    line = _Line(out, run, pipeline)
    try:
        produced = run.produce(events, rate=len(events) / max(args.seconds, 0.1), progress=line.show)
        inputs = run.input_counts(produced)
        deadline = time.monotonic() + 120
        while not run.drained(pipeline, inputs):
            if not pipeline.alive or time.monotonic() > deadline:
                say(f"\nthe pipeline did not catch up: {pipeline.errors}")
                return 1
            line.show(produced, time.monotonic() - started)
            pipeline.stop_event.wait(0.2)
        line.show(produced, time.monotonic() - started, force=True)
    finally:
        pipeline.stop()
        sinks.stop()
        codes = [pipeline.join(60), sinks.join(60)]
    out.write("\n")
    say("finishing the Iceberg commits and the silver merge ...")
    final = run.worker(until_caught_up=True, sinks=True)
    codes.append(final.run())
    if any(codes):
        say(f"a worker failed (exit codes {codes}): {pipeline.errors + sinks.errors + final.errors}")
        return 1
    return _summary(run, pipeline, inputs, time.monotonic() - started, args.keep, say)


class _Line:
    """The live progress line: records/s, lag, dead letters, windows emitted."""

    def __init__(self, out: IO[str], run: ShopRun, worker: Any) -> None:
        self.out, self.run, self.worker, self.last = out, run, worker, 0.0

    def show(self, produced: Counter[str], elapsed: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        totals = self.worker.agents[0].totals
        inputs = self.run.input_counts(produced)
        consumed = sum(totals.consumed[t] for t in inputs)
        dead = sum(totals.dead_lettered.values()) + sum(totals.late.values())
        windows = sum(totals.produced[self.run.topic(t)] for t in WINDOW_TOPICS)
        text = (
            f"{elapsed:5.0f}s  generated {sum(produced.values()):>8,}  processed {consumed:>8,}"
            f" ({consumed / max(elapsed, 1e-9):>7,.0f}/s)  lag {max(0, sum(inputs.values()) - consumed):>7,}"
            f"  DLQ {dead:>6,}  windows {windows:>6,}"
        )
        self.out.write(f"\r{text}\x1b[K")
        self.out.flush()


def _summary(run: ShopRun, worker: Any, inputs: dict[str, int], seconds: float, keep: bool, say: Any) -> int:
    say(f"\ndone in {seconds:.1f}s\n\nrecords per topic (inputs, outputs committed, dead letters):")
    for topic, n in topic_counts(run, worker).items():
        say(f"  {topic:<58} {n:>8,}")
    say("\ndead letters by reason (source, written by, dlq.stage, dlq.error.class):")
    for (source, app, stage, cls), n in sorted(dlq_reasons(run).items()):
        say(f"  {source:<22} {app:<9} {stage:<9} {cls:<24} {n:>6,}")
    totals = worker.agents[0].totals
    say("\nwindows emitted:")
    for topic in WINDOW_TOPICS:
        say(f"  {topic:<22} {totals.produced[run.topic(topic)]:>6,}")
    say("\nIceberg tables (rows; offsets in the latest snapshot):")
    for table, rows, offsets in table_report(run):
        say(f"  {table:<24} {rows:>7,}  {offsets}")
    say(f"\nconsumer lag of the pipeline: {lag(run, inputs, worker)}")
    say("\ninvariant consumed = emitted + dead-lettered + filtered + late:")
    balanced = True
    for topic, c, e, d, f, lt, ok in invariant(worker):
        balanced &= ok
        verdict = "holds" if ok else "BROKEN"
        say(f"  {topic:<58} {c:>7,} = {e:,} + {d:,} + {f:,} + {lt:,}  {verdict}")
    say("\nlook further:")
    say(f"  streamsvc dlq inspect {run.topic('shop.clicks')}.dlq --samples 3")
    say("  the status page (http://127.0.0.1:<port>/) is served while the pipeline runs")
    cfg = run.catalog_config
    say(
        '  python -c "from pyiceberg.catalog.sql import SqlCatalog; '
        f"c = SqlCatalog('demo', uri='{cfg.uri}', warehouse='{cfg.warehouse}'); "
        "print(c.load_table('shop_gold.revenue_1m').scan().to_arrow().to_pandas())\""
    )
    if not keep:
        say("  (rerun with --keep to keep the topics and tables for that; this run's are being removed)")
    return 0 if balanced else 1
