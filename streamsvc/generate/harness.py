"""Run the shop pipeline in-process on a real broker and registry: topics from the topology plan,
schemas registered, generated traffic produced, the pipeline and its Iceberg sinks run, outputs read
back. The demo (`streamsvc demo`) and the tests drive it; every name carries `prefix`, so runs do not
collide and `cleanup` removes exactly what the run created."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from confluent_kafka import Message

from streamsvc.config import Settings
from streamsvc.generate.produce import Encoder, produce
from streamsvc.generate.shop import SCHEMAS, TOPICS, Event
from streamsvc.registry.client import registry_client
from streamsvc.runtime.topics import admin_client, delete_topics, read_all
from streamsvc.sinks.iceberg.catalog import CatalogConfig, make_catalog
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec
from streamsvc.topology.loader import load_module

SHOP_DIR = Path(__file__).resolve().parents[2] / "topologies" / "shop"


def shop_module(name: str) -> ModuleType:
    """`topologies/shop/<name>.py` (pipeline, sinks, oracle, logic), loaded as the CLI loads topologies."""
    return load_module(str(SHOP_DIR / f"{name}.py"))


@dataclass
class ShopRun:
    """One run of the shop pipeline; topic `t` is `<prefix>.t`, the app id `<prefix>-shop`."""

    bootstrap: str
    registry_url: str
    prefix: str
    warehouse: Path
    commit_interval_s: float = 1.0
    pipeline: ModuleType = field(default_factory=lambda: shop_module("pipeline"))
    created: list[str] = field(default_factory=list)

    @property
    def app_id(self) -> str:
        return f"{self.prefix}-shop"

    @property
    def lake_app_id(self) -> str:
        """The sinks' app id (their dead letters say `dlq.app=<it>`, the pipeline's `<app_id>`)."""
        return f"{self.prefix}-shop-lake"

    def topic(self, logical: str) -> str:
        return f"{self.prefix}.{logical}"

    @property
    def topics(self) -> dict[str, str]:
        names = (*TOPICS, *self.pipeline.OUTPUTS)
        return {name: self.topic(name) for name in names}

    def settings(self, **overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "registry_url": self.registry_url,
            "app_id": self.app_id,
            "instance_id": "shop-0",
            "topics": self.topics,
            "state_dir": str(self.warehouse / "state"),
        }
        return Settings(**{**base, **overrides})

    @property
    def catalog_config(self) -> CatalogConfig:
        return CatalogConfig(
            uri=f"sqlite:///{self.warehouse / 'catalog.db'}", warehouse=(self.warehouse / "lake").as_uri()
        )

    def sinks(self) -> list[IcebergSinkSpec]:
        specs: list[IcebergSinkSpec] = shop_module("sinks").sinks(self.commit_interval_s)
        return specs

    def create_topics(self) -> list[str]:
        """Create every topic of the plan (inputs with one partition: the oracle relies on order)."""
        from streamsvc.admin.app import load_app
        from streamsvc.admin.topics import create_topics, plan_topics

        admin = admin_client(self.bootstrap)
        existing = set(admin.list_topics(timeout=30).topics)
        app = load_app(self.pipeline.topology, self.settings(), existing, self.sinks())
        made = create_topics(admin, plan_topics(admin, app, partitions=1))
        self.created += made
        return made

    def register_schemas(self) -> dict[str, int]:
        return Encoder(registry_client(self.registry_url), self.topics).register()

    def produce(
        self,
        events: Sequence[Event],
        rate: float = 0.0,
        progress: Callable[[Counter[str], float], None] | None = None,
    ) -> Counter[str]:
        encoder = Encoder(registry_client(self.registry_url), self.topics)
        return produce(self.bootstrap, (encoder.encode(e) for e in events), rate, progress)

    def worker(self, until_caught_up: bool = True, sinks: bool = False, **settings: Any) -> Any:
        """A Worker for the pipeline, or (`sinks=True`) for the Iceberg sink agents (as `lake_app_id`)."""
        from streamsvc.observability.http import HealthState
        from streamsvc.runtime.worker import Worker
        from streamsvc.sinks.iceberg.agent import IcebergSinkAgent

        config = self.settings(**({"app_id": self.lake_app_id} if sinks else {}), **settings)
        if not sinks:
            return Worker([self.pipeline.topology], config, until_caught_up=until_caught_up)
        health = HealthState()
        agents = [
            IcebergSinkAgent(spec, config, make_catalog(self.catalog_config), until_caught_up, health=health)
            for spec in self.sinks()
        ]
        return Worker([], config, agents=agents, health=health)

    def input_counts(self, produced: Counter[str]) -> dict[str, int]:
        """Records per real input topic, from `produce`'s counts."""
        return {self.topic(t): produced[self.topic(t)] for t in TOPICS}

    def drained(self, worker: Any, inputs: dict[str, int]) -> bool:
        """The pipeline worker has consumed every input record and read back everything it wrote to
        its repartition topics (so every stateful operator has seen every record)."""
        totals = worker.agents[0].totals
        repartitions = [t for t in totals.produced if t.endswith("-repartition")]
        return all(totals.consumed[t] >= n for t, n in inputs.items()) and all(
            totals.consumed[t] >= totals.produced[t] for t in repartitions
        )

    def run_pipeline(self, inputs: dict[str, int], **settings: Any) -> Any:
        """Run the pipeline with `until_caught_up` on input already produced; returns the finished worker.
        Raises RuntimeError if it failed or finished without having read back everything it wrote to
        its repartition topics (`drained`)."""
        worker = self.worker(until_caught_up=True, **settings)
        code = worker.run()
        if code != 0:
            raise RuntimeError(f"the shop pipeline exited with {code}: {worker.errors}")
        if not self.drained(worker, inputs):
            totals = worker.agents[0].totals
            raise RuntimeError(f"caught up before draining: consumed {dict(totals.consumed)} of {inputs}")
        return worker

    def read(self, logical: str) -> list[Message]:
        return read_all(self.bootstrap, self.topics.get(logical, logical))

    def delete_groups(self, timeout_s: float = 10.0) -> list[str]:
        """Delete the run's consumer groups, asking again while a departing member still holds one;
        returns those left."""
        admin = admin_client(self.bootstrap)
        deadline = time.monotonic() + timeout_s
        while True:
            listed = admin.list_consumer_groups().result(30).valid
            left = [g.group_id for g in listed if g.group_id.startswith(self.app_id)]
            for future in admin.delete_consumer_groups(left).values() if left else ():
                with contextlib.suppress(Exception):
                    future.result(30)
            listed = admin.list_consumer_groups().result(30).valid
            left = [g.group_id for g in listed if g.group_id.startswith(self.app_id)]
            if not left or time.monotonic() > deadline:
                return left
            threading.Event().wait(0.5)

    def cleanup(self) -> list[str]:
        """Delete the run's topics, consumer groups, schema subjects and tables; returns the groups
        left (a static member that just left keeps its group until its session times out)."""
        groups = self.delete_groups()
        admin = admin_client(self.bootstrap)
        existing = set(admin.list_topics(timeout=30).topics)
        delete_topics(admin, sorted(t for t in existing if t.startswith(self.prefix)))
        client = registry_client(self.registry_url)
        for topic in {SCHEMAS[name] for name in SCHEMAS}:
            with contextlib.suppress(Exception):
                client.delete_subject(f"{self.topic(topic)}-value")
                client.delete_subject(f"{self.topic(topic)}-value", permanent=True)
        catalog = make_catalog(self.catalog_config)
        for spec in self.sinks():
            for table in (spec.table, spec.silver_table):
                if table:
                    with contextlib.suppress(Exception):
                        catalog.purge_table(table)
        return groups


def run_in_thread(worker: Any) -> tuple[threading.Thread, list[int]]:
    """Start `worker.run()` on a thread; the list receives its exit code."""
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(worker.run()), daemon=True)
    thread.start()
    return thread, code
