"""Nexmark Q5-lite on faust-streaming (the peer of bench/run), `processing_guarantee="exactly_once"`.

Runs in .venv-peers/faust (bench/peers/requirements-faust.txt), so it imports nothing from streamsvc.
A table of counts per auction, `hopping(10, 2, expires=1)`, event time from the bid's `date_time`
(`relative_to`). faust has no "emit on close" operator: a window's final count is sent to the output
topic from the table's `on_window_close` callback, which faust calls from its periodic table cleanup
(`table_cleanup_interval`, set to 0.2 s here) once the *wall clock* is past the window's end + expires.
So the harness feeds this job bids generated live with event time = now (see bench/harness.py).
The source is keyed and partitioned by auction like the table, so no repartition topic is needed.
Prints "ready" once it has partitions assigned, "first_record" once; stops when the harness writes a
line on stdin.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import faust


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("bootstrap", "source", "outputs", "app-id", "work"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args()

    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        processing_guarantee="exactly_once",
        store="memory://",
        datadir=args.work,
        topic_partitions=args.partitions,
        broker_commit_interval=1.0,
        table_cleanup_interval=0.2,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    source = app.topic(args.source, key_serializer="raw", value_serializer="json", partitions=args.partitions)
    output = app.topic(
        args.outputs.split(",")[0], key_serializer="raw", value_serializer="json", partitions=args.partitions
    )

    async def closed(key: Any, value: Any) -> None:
        auction, (start, _end) = key
        start_ms = round(start * 1000)
        payload = {"start": start_ms, "end": start_ms + 10_000, "value": int(value)}
        await output.send(key=auction.encode(), value=payload)

    counts = (
        app.Table("q5-counts", default=int, partitions=args.partitions, on_window_close=closed)
        .hopping(10, 2, expires=1)
        .relative_to(lambda event: event.value["date_time"] / 1000)
    )
    first = threading.Event()

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for bid in stream:
            if not first.is_set():
                first.set()
                print(json.dumps({"event": "first_record", "pass": 0, "at": time.time()}), flush=True)
            counts[str(bid["auction"])] += 1

    @app.on_rebalance_complete.connect
    async def ready(sender: Any, **kwargs: Any) -> None:
        print(json.dumps({"event": "ready", "at": time.time()}), flush=True)

    def stop_on_stdin() -> None:
        sys.stdin.readline()
        print(json.dumps({"event": "done"}), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_on_stdin, daemon=True).start()
    logging.getLogger("faust").setLevel(logging.WARNING)
    # faust's start-up spinner writes terminal escapes to the worker's stdout: keep it off the lines the
    # harness reads (ours go to sys.stdout directly; faust's log goes to stderr).
    with open(os.devnull, "w") as devnull:
        worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False, stdout=devnull)
        worker.execute_from_commandline()


if __name__ == "__main__":
    main()
