"""Nexmark Q5-lite on bytewax (the peer of bench/run): at-least-once, bytewax has no exactly-once sink.

Runs in .venv-peers/bytewax (bench/peers/requirements-bytewax.txt); imports nothing from streamsvc.
`count_window` over a SlidingWindower of 10 s every 2 s aligned to the epoch, an EventClock 1 s behind
the largest event time. bytewax's clock also advances with system time; it is pinned here (a fixed
`now_getter`), so windows close on event time only, like the other engines. bytewax keeps the clock per
key, so a window closes when its own key sees a later bid. Prints "first_record" once; exits when the
harness writes a line on stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, SlidingWindower, count_window
from bytewax.run import cli_main

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("bootstrap", "source", "outputs", "app-id", "work"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args()
    first = threading.Event()

    def parse(msg: Any) -> tuple[str, int]:
        if not first.is_set():
            first.set()
            print(json.dumps({"event": "first_record", "pass": 0, "at": time.time()}), flush=True)
        bid = json.loads(msg.value)
        return str(bid["auction"]), int(bid["date_time"])

    flow = Dataflow("q5_lite")
    source = kop.input(
        "bids",
        flow,
        brokers=[args.bootstrap],
        topics=[args.source],
        add_config={"isolation.level": "read_committed"},
        batch_size=5000,
    )
    bids = op.map("parse", source.oks, parse)
    clock = EventClock(
        ts_getter=lambda kv: EPOCH + timedelta(milliseconds=kv[1]),
        wait_for_system_duration=timedelta(seconds=1),
        now_getter=lambda: EPOCH,
        to_system_utc=lambda _t: None,
    )
    windower = SlidingWindower(length=timedelta(seconds=10), offset=timedelta(seconds=2), align_to=EPOCH)
    counts = count_window("count", bids, clock, windower, key=lambda kv: kv[0])

    def encode(item: tuple[str, tuple[int, int]]) -> KafkaSinkMessage[bytes, bytes]:
        key, (window_id, n) = item
        start = window_id * 2000
        return KafkaSinkMessage(
            key.encode(), json.dumps({"start": start, "end": start + 10_000, "value": n}).encode()
        )

    kop.output(
        "out",
        op.map("encode", counts.down, encode),
        brokers=[args.bootstrap],
        topic=args.outputs.split(",")[0],
    )

    def stop_on_stdin() -> None:
        sys.stdin.readline()
        print(json.dumps({"event": "done"}), flush=True)
        os._exit(0)

    threading.Thread(target=stop_on_stdin, daemon=True).start()
    cli_main(flow, workers_per_process=1)


if __name__ == "__main__":
    main()
