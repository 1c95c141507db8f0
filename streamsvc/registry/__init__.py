"""Schema registry access: client factory and subject name strategies."""

from streamsvc.registry.client import (
    SubjectNameStrategy,
    record_name_strategy,
    registry_client,
    topic_name_strategy,
    topic_record_name_strategy,
)

__all__ = [
    "SubjectNameStrategy",
    "record_name_strategy",
    "registry_client",
    "topic_name_strategy",
    "topic_record_name_strategy",
]
