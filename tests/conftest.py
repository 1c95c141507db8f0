"""Fixtures for tests against the real local Kafka broker (started by `streamsvc dev kafka start`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from streamsvc.dev import kafka
from streamsvc.observability.logging import configure_logging
from streamsvc.runtime.topics import admin_client, delete_topics, ensure_topics


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """STREAMSVC_BOOTSTRAP_SERVERS, or the project's local broker (started if needed)."""
    configure_logging("WARNING")
    return os.environ.get("STREAMSVC_BOOTSTRAP_SERVERS") or kafka.start(kafka.LocalKafka.from_env())


@pytest.fixture(scope="session")
def admin(bootstrap: str) -> AdminClient:
    return admin_client(bootstrap)


class Names:
    """Unique topic/group names for one test; topics made through it are deleted afterwards."""

    def __init__(self, admin: AdminClient, test_name: str) -> None:
        self.admin = admin
        self.prefix = f"t.{test_name[:40]}.{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []

    def __call__(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def topic(self, name: str, partitions: int = 1, **config: Any) -> str:
        topic = self(name)
        ensure_topics(
            self.admin, {topic: partitions}, {k.replace("_", "."): str(v) for k, v in config.items()}
        )
        self.created.append(topic)
        return topic

    def track(self, *topics: str) -> None:
        self.created.extend(topics)


@pytest.fixture
def names(admin: AdminClient, request: pytest.FixtureRequest) -> Iterator[Names]:
    n = Names(admin, request.node.name.replace("[", ".").replace("]", ""))
    yield n
    existing = set(admin.list_topics(timeout=10).topics)
    delete_topics(admin, [t for t in existing if t.startswith(n.prefix)])
