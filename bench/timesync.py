"""Benchmark: the cost of time synchronisation (`streamsvc.runtime.timesync.TimeSync`), in process.

    .venv/bin/python -m bench.timesync --records 1000000

Two co-partitioned inputs (a stream and its table, 4 partitions each), records with increasing,
interleaved timestamps, fed in fetch-sized chunks (`--batch` per partition, alternating inputs) and
released in timestamp order by `TimeSync.add` + `take` -- the work the agent adds per record when the
inputs are synchronised. Reported as records/s and ns per record, next to a head-by-head Python merge
of the same chunks (what the vectorised sort replaces). Both must give the same order.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from streamsvc.runtime.timesync import TimeSync


@dataclass(slots=True)
class Rec:
    topic_: str
    partition_: int
    offset_: int
    ts: int

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.ts)


def chunks(records: int, partitions: int, batch: int) -> list[list[Rec]]:
    per = records // (2 * partitions)
    out = []
    for start in range(0, per, batch):
        for topic, shift in (("table", 0), ("stream", 1)):
            for p in range(partitions):
                out.append([Rec(topic, p, o, 2 * o + shift) for o in range(start, min(start + batch, per))])
    return out


def head_merge(fetched: list[list[Rec]], partitions: int) -> list[Rec]:
    """Reference: per task, pick heads one by one while both partitions have a record buffered."""
    queues: dict[tuple[str, int], list[Rec]] = {}
    out: list[Rec] = []
    for chunk in fetched:
        queues.setdefault((chunk[0].topic_, chunk[0].partition_), []).extend(chunk)
        for p in range(partitions):
            a, b = queues.get(("table", p), []), queues.get(("stream", p), [])
            i = j = 0
            while i < len(a) and j < len(b):
                if (a[i].ts, 0) <= (b[j].ts, 1):
                    out.append(a[i])
                    i += 1
                else:
                    out.append(b[j])
                    j += 1
            del a[:i], b[:j]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--batch", type=int, default=500)
    args = p.parse_args()
    fetched = chunks(args.records, args.partitions, args.batch)
    n = sum(map(len, fetched))
    sync = TimeSync([["table", "stream"]], max_task_idle_ms=0, max_buffered=10 * args.batch)
    sync.assign([(t, q) for t in ("table", "stream") for q in range(args.partitions)])
    started = time.perf_counter()
    out: list[Rec] = []
    for chunk in fetched:
        sync.add(chunk)  # type: ignore[arg-type]
        out += sync.take(0.0, lambda tp: False)  # type: ignore[arg-type]
    vectorised = time.perf_counter() - started
    started = time.perf_counter()
    reference = head_merge(fetched, args.partitions)
    python = time.perf_counter() - started
    assert [(r.topic_, r.partition_, r.offset_) for r in out] == [
        (r.topic_, r.partition_, r.offset_) for r in reference
    ], "the vectorised merge must equal the head-by-head merge"
    print(f"{n:,} records, 2 inputs x {args.partitions} partitions, {args.batch} per fetch")
    print("| merge | records/s | ns per record |")
    print("|---|---:|---:|")
    for name, seconds in (("TimeSync (vectorised)", vectorised), ("head-by-head Python loop", python)):
        print(f"| {name} | {len(out) / seconds:,.0f} | {1e9 * seconds / len(out):,.0f} |")


if __name__ == "__main__":
    main()
