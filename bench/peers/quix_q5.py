"""Nexmark Q5-lite on Quix Streams (the peer of bench/run), exactly-once with 1 s commits.

Runs in .venv-peers/quix (bench/peers/requirements-quix.txt), so it imports nothing from streamsvc.
Hopping window of 10 s every 2 s, grace 1 s, counted per auction, emitted final, windows closed by
the partition's stream time (`closing_strategy="partition"`, as Kafka Streams; Quix's default closes
them per key). Prints one JSON line
when the first record is processed; stops when the harness writes a line on stdin.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from quixstreams import Application


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("bootstrap", "source", "outputs", "app-id", "work"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args()
    first = threading.Event()

    def processed(_topic: str, _partition: int, _offset: int) -> None:
        if not first.is_set():
            first.set()
            print(json.dumps({"event": "first_record", "pass": 0, "at": time.time()}), flush=True)

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.app_id,
        auto_offset_reset="earliest",
        commit_interval=1.0,
        processing_guarantee="exactly-once",
        state_dir=args.work,
        loglevel="WARNING",
        on_message_processed=processed,
    )
    source = app.topic(
        args.source,
        value_deserializer="json",
        timestamp_extractor=lambda value, headers, ts, ts_type: int(value["date_time"]),
    )
    output = app.topic(args.outputs.split(",")[0], value_serializer="json")
    sdf = app.dataframe(source)
    sdf = (
        sdf.hopping_window(duration_ms=10_000, step_ms=2_000, grace_ms=1_000)
        .count()
        .final(closing_strategy="partition")
    )
    sdf.to_topic(output)

    def stop_on_stdin() -> None:
        sys.stdin.readline()
        app.stop()

    threading.Thread(target=stop_on_stdin, daemon=True).start()
    app.run()
    print(json.dumps({"event": "done"}), flush=True)


if __name__ == "__main__":
    main()
