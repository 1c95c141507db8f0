"""`guarantee = "at_least_once"` runs the same topology with plain offset commits."""

from __future__ import annotations

from collections import Counter

import orjson

from streamsvc.config import Settings
from streamsvc.runtime.topics import read_all
from streamsvc.runtime.worker import Worker
from streamsvc.topology.loader import load_topology
from tests.support import ROOT, committed_offsets, produce


def test_at_least_once_processes_everything_and_commits(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    source = names.topic("input", 2)
    names.track(names("output"), source + ".dlq")
    produce(bootstrap, source, [(str(i).encode(), orjson.dumps({"id": i, "n": i})) for i in range(2000)])
    app = names("app")
    settings = Settings(
        app_id=app,
        bootstrap_servers=bootstrap,
        guarantee="at_least_once",
        instance_id="alo-0",
        topics={"input": source, "output": names("output")},
    )
    worker = Worker(
        [load_topology(str(ROOT / "tests" / "topologies" / "keyed_transform.py"))], settings, True
    )
    worker.start()
    assert worker.join(120) == 0
    got = Counter(
        orjson.loads(m.value())["id"] for m in read_all(bootstrap, names("output"), read_committed=False)
    )
    assert got == Counter(range(2000))
    assert sum(committed_offsets(bootstrap, app, source, 2).values()) == 2000
