"""What the schema commands ask a Confluent-API schema registry, with its errors made readable."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from streamsvc.errors import ConfigError
from streamsvc.registry.avsc import SchemaVersion, parse_avro
from streamsvc.registry.client import registry_client
from streamsvc.registry.compat import Mode

try:  # the HTTP library the client uses (httpx2 or httpx), whose transport errors it lets through
    from confluent_kafka.schema_registry.common._httpx_compat import httpx as _http

    _UNREACHABLE: tuple[type[BaseException], ...] = (_http.HTTPError, OSError)
except ImportError:  # another client version: its errors still name the problem
    _UNREACHABLE = (OSError,)

SUBJECT_NOT_FOUND = 40401
INCOMPATIBLE = 409


class RegistryError(ConfigError):
    """The registry is unreachable or refused a request for a reason other than compatibility."""


class IncompatibleSchemaError(RegistryError):
    """The registry refused to register a schema: it breaks the subject's compatibility mode (HTTP 409)."""


@dataclass(frozen=True)
class Registered:
    subject: str
    version: int
    schema_id: int


class Registry:
    """One registry, by URL (`mock://` gives an in-process mock, for unit tests only)."""

    def __init__(self, url: str, client: SchemaRegistryClient | None = None) -> None:
        self.url = url
        # A command answers in seconds when the registry is down (the client's default retries take ~15 s).
        self.client = client or registry_client(url, **{"max.retries": 2, "retries.wait.ms": 250})

    @contextlib.contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        try:
            yield
        except SchemaRegistryError as exc:
            if exc.http_status_code == INCOMPATIBLE:
                raise IncompatibleSchemaError(f"{what}: {exc.error_message}") from exc
            raise RegistryError(f"{what}: the registry at {self.url} answered {exc}") from exc
        except _UNREACHABLE as exc:
            raise RegistryError(f"{what}: cannot reach the registry at {self.url}: {exc}") from exc

    def versions(self, subject: str) -> list[SchemaVersion]:
        """Every registered version of `subject`, oldest first; empty for an unknown subject."""
        with self._calling(f"listing the versions of {subject}"):
            try:
                numbers = self.client.get_versions(subject)
            except SchemaRegistryError as exc:
                if exc.error_code == SUBJECT_NOT_FOUND:
                    return []
                raise
        return [self.version(subject, number) for number in sorted(numbers)]

    def version(self, subject: str, number: int | None = None) -> SchemaVersion:
        """Version `number` of `subject` (None: the latest)."""
        with self._calling(f"reading {subject} version {number or 'latest'}"):
            if number is None:
                registered = self.client.get_latest_version(subject)
            else:
                registered = self.client.get_version(subject, number)
        label = f"{subject} v{registered.version}"
        return parse_avro(registered.schema.schema_str or "", label)

    def mode(self, subject: str | None = None) -> Mode:
        """The mode the registry applies to `subject` (its own, else the global one), or the global mode."""
        with self._calling(f"reading the compatibility of {subject or 'the registry'}"):
            if subject is None:
                return Mode.parse(self.client.get_compatibility())
            try:
                # The client's get_compatibility cannot pass defaultToGlobal; without it Apicurio answers
                # NONE for a subject without its own setting while it applies the global mode.
                answer = self.client._rest_client.get(
                    f"config/{quote(subject, safe='')}", query={"defaultToGlobal": "true"}
                )
            except SchemaRegistryError as exc:
                if exc.error_code == SUBJECT_NOT_FOUND or exc.http_status_code == 404:
                    return Mode.parse(self.client.get_compatibility())
                raise
            return Mode.parse(str(answer["compatibilityLevel"]))

    def set_mode(self, mode: Mode, subject: str | None = None) -> None:
        with self._calling(f"setting the compatibility of {subject or 'the registry'} to {mode}"):
            self.client.set_compatibility(subject, mode.value)

    def lookup(self, subject: str, schema: SchemaVersion) -> Registered | None:
        """The version of `subject` that holds `schema` already, if any."""
        with self._calling(f"looking up {schema.label} under {subject}"):
            try:
                found = self.client.lookup_schema(subject, Schema(schema.text, "AVRO"))
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    return None
                raise
            return Registered(subject, int(found.version or 0), int(found.schema_id or 0))

    def accepts(self, subject: str, schema: SchemaVersion, mode: Mode) -> bool:
        """The registry's own verdict on registering `schema` under `subject` in `mode`.

        Asked version by version (the latest, or every one for transitive modes) because Apicurio's
        `POST /compatibility/subjects/{s}/versions` checks every version even for non-transitive modes,
        where registering checks only the latest (as Confluent's does).
        """
        if mode is Mode.NONE:
            return True
        request = Schema(schema.text, "AVRO")
        with self._calling(f"testing {schema.label} against {subject}"):
            try:
                numbers = self.client.get_versions(subject)
            except SchemaRegistryError as exc:
                if exc.error_code == SUBJECT_NOT_FOUND:
                    return True
                raise
            targets: list[int | str] = [int(n) for n in numbers] if mode.transitive else ["latest"]
            return all(self.client.test_compatibility(subject, request, version=v) for v in targets)

    def register(self, subject: str, schema: SchemaVersion) -> Registered:
        """Register `schema` under `subject` (the existing version when it is there already)."""
        request = Schema(schema.text, "AVRO")
        with self._calling(f"registering {schema.label} under {subject}"):
            self.client.register_schema(subject, request)
            found = self.client.lookup_schema(subject, request)
        return Registered(subject, int(found.version or 0), int(found.schema_id or 0))
