"""Schema registry client factory and Confluent subject name strategies."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

from streamsvc.errors import ConfigError

REGISTRY_URL_ENV = "STREAMSVC_REGISTRY_URL"
"""The registry every command and serde uses unless told otherwise."""

SubjectNameStrategy = Callable[[str, bool, "str | None"], str]
"""`(topic, is_key, record_fullname) -> subject`; record_fullname is None for unnamed schemas."""


REQUEST_TIMEOUT_S = 30
"""Per HTTP request; the client's own default is none, so a registry that never answers would hang."""


def registry_client(url: str, **conf: Any) -> SchemaRegistryClient:
    """Build a registry client for `url`; extra `conf` keys use the client's dotted names (`timeout` in
    seconds defaults to REQUEST_TIMEOUT_S).

    `mock://...` URLs give an in-process mock registry; every call returns a new, empty one, so share
    the instance when a producer and a consumer in one process must see the same schemas.
    """
    if not url:
        raise ConfigError("schema registry url is empty")
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client({"timeout": REQUEST_TIMEOUT_S, **conf, "url": url})


def bind_registry(serdes: Iterable[Any], url: str) -> None:
    """Give every serde that needs one (`bind_registry`) a client for `url`, wrappers included (such as
    `DebeziumSerde`, which exposes the wrapped serde as `inner`). No-op for an empty url."""
    if not url:
        return
    client = registry_client(url)
    for serde in serdes:
        layer: Any = serde
        while layer is not None:
            bind = getattr(layer, "bind_registry", None)
            if bind is not None:
                bind(client)
            layer = getattr(layer, "inner", None)


def topic_name_strategy(topic: str, is_key: bool, record_name: str | None) -> str:
    """TopicNameStrategy (the Confluent default): `<topic>-key` / `<topic>-value`."""
    return f"{topic}-{'key' if is_key else 'value'}"


def record_name_strategy(topic: str, is_key: bool, record_name: str | None) -> str:
    """RecordNameStrategy: the record's full name, shared by every topic carrying that record."""
    return _require_name(record_name, "record_name_strategy")


def topic_record_name_strategy(topic: str, is_key: bool, record_name: str | None) -> str:
    """TopicRecordNameStrategy: `<topic>-<record fullname>`."""
    return f"{topic}-{_require_name(record_name, 'topic_record_name_strategy')}"


def _require_name(record_name: str | None, strategy: str) -> str:
    if not record_name:
        raise ConfigError(f"{strategy} needs a named schema (record, enum or fixed)")
    return record_name
