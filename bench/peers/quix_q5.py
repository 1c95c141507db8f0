"""Nexmark Q5-lite on Quix Streams (the peer), exactly-once with 1 s commits; run by bench/q5.py.

Runs in the peers venv (bench/peers/requirements.txt), so it imports nothing from streamsvc. Prints one
JSON line: records processed, active seconds (first to last record processed) and peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from quixstreams import Application


def peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True)
    args = p.parse_args()
    seen = {"n": 0, "first": 0.0, "last": 0.0}

    def processed(_topic: str, _partition: int, _offset: int) -> None:
        now = time.monotonic()
        if not seen["n"]:
            seen["first"] = now
        seen["n"] += 1
        seen["last"] = now

    with tempfile.TemporaryDirectory() as state_dir:
        app = Application(
            broker_address=args.bootstrap,
            consumer_group=args.group,
            auto_offset_reset="earliest",
            commit_interval=1.0,
            processing_guarantee="exactly-once",
            state_dir=state_dir,
            loglevel="WARNING",
            on_message_processed=processed,
        )
        source = app.topic(
            args.source,
            value_deserializer="json",
            timestamp_extractor=lambda value, headers, ts, ts_type: int(value["date_time"]),
        )
        output = app.topic(args.output, value_serializer="json")
        sdf = app.dataframe(source)
        sdf = sdf.hopping_window(duration_ms=10_000, step_ms=2_000, grace_ms=1_000).count().final()
        sdf.to_topic(output)
        app.run(timeout=5.0)
    report = {"records": seen["n"], "active_s": seen["last"] - seen["first"], "peak_rss_mb": peak_rss_mb()}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
