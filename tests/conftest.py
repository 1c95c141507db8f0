"""Fixtures for tests against the real local Kafka broker (started by `streamsvc dev kafka start`) and the
real schema registry (started by `streamsvc dev registry start`)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError

from streamsvc.dev import kafka, registry
from streamsvc.observability.logging import configure_logging
from streamsvc.registry.client import REGISTRY_URL_ENV, registry_client
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


@pytest.fixture(scope="session")
def registry_url() -> str:
    """STREAMSVC_REGISTRY_URL, or the project's local schema registry (started if needed)."""
    return os.environ.get(REGISTRY_URL_ENV) or registry.start(registry.LocalRegistry.from_env())


class Subjects:
    """Unique schema-registry subject names for one test; the subjects are deleted afterwards."""

    def __init__(self, client: SchemaRegistryClient, test_name: str) -> None:
        self.client = client
        self.prefix = f"t-{re.sub(r'[^A-Za-z0-9_.-]', '-', test_name)[:40]}-{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []

    def __call__(self, name: str) -> str:
        subject = f"{self.prefix}-{name}"
        self.made.append(subject)
        return subject

    def track(self, *subjects: str) -> None:
        """Delete these subjects (named after test topics, say) after the test too."""
        self.made.extend(subjects)

    def delete_all(self) -> None:
        for subject in self.made:
            try:
                self.client.delete_subject(subject)
                self.client.delete_subject(subject, permanent=True)
            except SchemaRegistryError:
                pass  # never registered, or already gone


@pytest.fixture
def schema_registry(registry_url: str) -> SchemaRegistryClient:
    """A client of the real registry (a new one per test: the client caches lookups)."""
    return registry_client(registry_url)


@pytest.fixture
def subjects(schema_registry: SchemaRegistryClient, request: pytest.FixtureRequest) -> Iterator[Subjects]:
    made = Subjects(schema_registry, request.node.name)
    yield made
    made.delete_all()
