"""The compatibility matrix on the real registry: each change, registered into Apicurio after its earlier
versions under each of the seven modes, gets the verdict the offline checker gives."""

from __future__ import annotations

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from streamsvc.registry.avsc import parse_avro
from streamsvc.registry.compat import Mode, check
from streamsvc.registry.remote import Registry
from tests.conftest import Subjects
from tests.registry.matrix import CASES, Case


def offline_accepts(case: Case, mode: Mode) -> bool:
    history, proposed = case.texts()
    earlier = [parse_avro(text, f"v{i + 1}") for i, text in enumerate(history)]
    return not check(mode, earlier, parse_avro(proposed, "proposed"))


def registry_verdicts(
    client: SchemaRegistryClient, subject: str, case: Case, mode: Mode
) -> tuple[bool, bool]:
    """(what `streamsvc schemas check` learns from the registry, whether registering then succeeds)."""
    history, proposed = case.texts()
    client.register_schema(
        subject, Schema(history[0], "AVRO")
    )  # Apicurio 2.6 configures existing subjects only
    client.set_compatibility(subject, "NONE")
    for text in history[1:]:
        client.register_schema(subject, Schema(text, "AVRO"))
    client.set_compatibility(subject, mode.value)
    registry = Registry("unused", client)
    assert registry.mode(subject) is mode
    asked = registry.accepts(subject, parse_avro(proposed, "proposed"), mode)
    try:
        client.register_schema(subject, Schema(proposed, "AVRO"))
    except SchemaRegistryError as exc:
        assert exc.http_status_code == 409, exc
        return asked, False
    assert len(client.get_versions(subject)) == len(history) + 1, "the change was not a new version"
    return asked, True


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_offline_and_registry_verdicts_agree(
    case: Case, schema_registry: SchemaRegistryClient, subjects: Subjects
) -> None:
    verdicts = {}
    for mode in Mode:
        asked, registered = registry_verdicts(schema_registry, subjects(mode.value.lower()), case, mode)
        verdicts[mode.value] = (case.expected(mode), offline_accepts(case, mode), asked, registered)
    wrong = {mode: v for mode, v in verdicts.items() if len(set(v)) != 1}
    assert not wrong, f"(expected, offline, registry check, registry register) differ: {wrong}"
