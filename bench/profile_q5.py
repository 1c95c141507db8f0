"""Profile `Processor.process` on the Nexmark Q5-lite topology (and the passthroughs) without Kafka.

    .venv/bin/python -m bench.profile_q5 --records 300000            # µs per record per topology
    .venv/bin/python -m bench.profile_q5 --records 300000 --profile  # plus the cProfile top 25

Messages are in-memory stand-ins for `confluent_kafka.Message` (4 partitions, batches of 5,000 in
partition runs, as the consumer hands them over); the time is the processor's alone (decode, event
time, operator tree, window folding, serialize), not consume or produce.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import pstats
import time
from pathlib import Path
from typing import Any

import orjson

from bench.nexmark import bids
from streamsvc.config import Settings
from streamsvc.runtime.processor import Processor
from streamsvc.topology import Topology

ROOT = Path(__file__).resolve().parents[1]


class Msg:
    """A consumed message, in memory."""

    __slots__ = ("_key", "_offset", "_partition", "_topic", "_ts", "_value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes, ts: int) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._ts = key, value, ts

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> Any:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def error(self) -> None:
        return None


def load(path: str, name: str = "topology") -> Topology:
    spec = importlib.util.spec_from_file_location("profiled_topology", ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    topology: Topology = getattr(module, name)
    return topology


def batches(records: int, partitions: int, batch: int, topic: str) -> list[list[Msg]]:
    per: dict[int, list[Msg]] = {p: [] for p in range(partitions)}
    for bid in bids(records, seed=5):
        part = bid.auction % partitions
        value = orjson.dumps(bid.to_json_dict())
        per[part].append(Msg(topic, part, len(per[part]), str(bid.auction).encode(), value, bid.date_time))
    out: list[list[Msg]] = []
    cursors = dict.fromkeys(per, 0)
    share = batch // partitions
    while any(cursors[p] < len(per[p]) for p in per):
        chunk: list[Msg] = []
        for p, msgs in per.items():
            chunk += msgs[cursors[p] : cursors[p] + share]
            cursors[p] += share
        out.append(chunk)
    return out


def run(topology: Topology, topics: dict[str, str], data: list[list[Msg]], profile: bool) -> float:
    proc = Processor(topology, Settings(app_id="profile", topics=topics))
    prof = cProfile.Profile() if profile else None
    started = time.process_time()
    if prof is not None:
        prof.enable()
    n = 0
    for chunk in data:
        proc.process(chunk)
        n += len(chunk)
    if prof is not None:
        prof.disable()
    took = time.process_time() - started
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return took / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=300_000)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--only", choices=["q5", "passthrough", "json_map"])
    args = p.parse_args()
    cases = {
        "q5": ("topologies/nexmark_q5.py", "topology", {"bids": "in", "bid_counts": "out"}),
        "passthrough": ("bench/topologies/passthrough.py", "passthrough", {"input": "in", "output": "out"}),
        "json_map": ("bench/topologies/passthrough.py", "json_map", {"input": "in", "output": "out"}),
    }
    data = batches(args.records, 4, 5000, "in")
    gc.collect()
    gc.freeze()  # the fixture is not garbage the engine makes: keep it out of every collection
    for name, (path, attr, topics) in cases.items():
        if args.only and name != args.only:
            continue
        us = min(run(load(path, attr), topics, data, args.profile and i == 0) for i in range(3))
        print(f"{name}: {us:.2f} µs/record in Processor.process ({1e6 / us:,.0f} records per CPU-s)")


if __name__ == "__main__":
    main()
