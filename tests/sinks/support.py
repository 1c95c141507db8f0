"""Helpers for the Iceberg sink tests: catalogs in tmp_path, sink processes, table reads."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog

from streamsvc.config import Settings
from streamsvc.faults import FaultHook
from streamsvc.sinks.iceberg.agent import IcebergSinkAgent
from streamsvc.sinks.iceberg.catalog import CatalogConfig, make_catalog
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from tests.support import ROOT, ChildProcess

SPEC = str(ROOT / "tests" / "sinks" / "specs" / "events.py")


def give_up():  # type: ignore[no-untyped-def]
    """pytest.skip locally, pytest.fail in CI, where every catalog and engine is part of the contract."""
    return pytest.fail if os.environ.get("CI") else pytest.skip


def sqlite_catalog(tmp: Path) -> tuple[CatalogConfig, Catalog]:
    config = CatalogConfig(uri=f"sqlite:///{tmp / 'catalog.db'}", warehouse=(tmp / "warehouse").as_uri())
    return config, make_catalog(config)


def events(start: int, stop: int, bad_every: int = 0) -> list[tuple[bytes, bytes]]:
    """JSON events `{"id", "n", "region"}`; every `bad_every`-th value is undecodable."""
    out = []
    for i in range(start, stop):
        if bad_every and i % bad_every == 0:
            out.append((str(i).encode(), b"{not json " + str(i).encode()))
        else:
            out.append((str(i).encode(), orjson.dumps({"id": i, "n": i % 7, "region": f"r{i % 3}"})))
    return out


def read_rows(catalog: Catalog, table: str) -> pa.Table:
    return catalog.load_table(table).scan().to_arrow()


def offset_counts(rows: pa.Table) -> Counter[tuple[str, int, int]]:
    cols = [rows.column(c).to_pylist() for c in ("_kafka_topic", "_kafka_partition", "_kafka_offset")]
    return Counter(zip(*cols, strict=True))


class SinkProcess(ChildProcess):
    """`python -m streamsvc.cli.iceberg sink` in a child process."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...] = (), log: Path | None = None) -> None:
        super().__init__(["streamsvc.cli.iceberg", "sink", SPEC, *args], env, log)


class SinkThread:
    """An `IcebergSinkAgent` on a thread of the test process."""

    def __init__(
        self,
        spec: IcebergSinkSpec,
        settings: Settings,
        config: CatalogConfig,
        until_caught_up: bool = False,
        faults: FaultHook | None = None,
    ) -> None:
        self.agent = IcebergSinkAgent(spec, settings, make_catalog(config), until_caught_up, faults=faults)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.agent.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "sink thread did not finish"
        if self.error is not None:
            raise self.error

    def close(self, timeout: float = 30) -> None:
        self.stop.set()
        self.thread.join(timeout)


def checksum(rows: pa.Table, columns: tuple[str, ...] = ("id", "n", "region")) -> str:
    """A digest of the rows' Kafka coordinates and `columns`, independent of file layout and row order."""
    keys = ["_kafka_topic", "_kafka_partition", "_kafka_offset"]
    ordered = rows.select([*keys, *columns]).sort_by([(k, "ascending") for k in keys])
    return hashlib.sha256(orjson.dumps(ordered.to_pylist())).hexdigest()


def data_files(catalog: Catalog, table: str) -> int:
    """Live data files of the table's current snapshot."""
    return len(catalog.load_table(table).inspect.files())


class MaintainProcess(ChildProcess):
    """`python -m streamsvc.cli.iceberg maintain` in a child process (stdout: its JSON report lines)."""

    def __init__(self, env: dict[str, str], args: tuple[str, ...], log: Path) -> None:
        super().__init__(["streamsvc.cli.iceberg", "--log-level", "WARNING", "maintain", *args], env, log)
