"""Avro serde: fastavro datums in the Confluent wire format, schemas from a schema registry.

Frame: byte 0 is the magic byte 0x00, bytes 1-4 the big-endian registry schema id, then the Avro datum
written with that (writer) schema. Reading resolves the writer schema to this serde's reader schema, so
producers may evolve their schema without breaking consumers. Bytes after the datum are ignored, as
Confluent's deserializers do.

Registry failures that are not about the record itself (connection errors, HTTP 5xx) propagate
unchanged: they are transient and must abort the transaction, not dead-letter the record.
"""

from __future__ import annotations

import os
import struct
from io import BytesIO
from typing import TYPE_CHECKING, Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError as FastavroResolutionError
from fastavro.types import Schema as ParsedSchema
from fastavro.validation import ValidationError
from fastavro.validation import validate as validate_datum

from streamsvc.errors import (
    ConfigError,
    DecodeError,
    EncodeError,
    MalformedPayloadError,
    SchemaResolutionError,
    UnknownSchemaError,
    WireFormatError,
)
from streamsvc.registry.client import (
    REGISTRY_URL_ENV,
    SubjectNameStrategy,
    registry_client,
    topic_name_strategy,
)
from streamsvc.serde.base import SerdeContext

if TYPE_CHECKING:  # the registry client pulls in an HTTP stack (~0.5 s of start-up): imported on first use
    from confluent_kafka.schema_registry import SchemaRegistryClient

_HEADER = struct.Struct(">BI")
_HEADER_SIZE = _HEADER.size
_MAGIC = 0
# What fastavro raises on a truncated or corrupt datum (it has no error type of its own for these).
_READ_ERRORS = (EOFError, IndexError, KeyError, ValueError, TypeError, OverflowError, struct.error)
_WRITE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, struct.error)


class AvroSerde:
    """Avro with the Confluent wire format.

    `schema` (Avro JSON text or dict) is the reader schema for decoding and the writer schema for
    encoding. `schema=None` decodes every record with its own writer schema (so a consumer such as an
    Iceberg sink follows the producer's schema evolution) and cannot encode. The registry is
    `registry`, else a client for `registry_url`, else one bound later by the runtime
    (`bind_registry`), else one for `$STREAMSVC_REGISTRY_URL`; it is only needed on first use.
    `validate=False` skips fastavro's datum validation on encode (faster, but e.g. an out-of-range
    `int` is then written silently instead of raising `EncodeError`).
    """

    def __init__(
        self,
        schema: str | dict[str, Any] | None,
        registry: SchemaRegistryClient | None = None,
        registry_url: str | None = None,
        subject_strategy: SubjectNameStrategy = topic_name_strategy,
        auto_register: bool = True,
        *,
        validate: bool = True,
    ) -> None:
        self._schema_str: str = ""
        self._schema: ParsedSchema | None = None
        if schema is not None:
            self._schema_str, self._schema = _parse_reader_schema(schema)
        self._record_name: str | None = self._schema.get("name") if isinstance(self._schema, dict) else None
        self._registry = registry
        self._registry_url = registry_url
        self._explicit_registry = registry is not None or registry_url is not None
        self._subject_strategy = subject_strategy
        self._auto_register = auto_register
        self._validate = validate
        # schema id -> (parsed writer schema, parsed reader schema or None when identical to the writer)
        self._read_schemas: dict[int, tuple[ParsedSchema, ParsedSchema | None]] = {}
        self._ids_by_ctx: dict[tuple[str, bool], int] = {}
        self._ids_by_subject: dict[str, int] = {}

    @property
    def schema(self) -> ParsedSchema | None:
        """The parsed reader/writer schema (None: each record's writer schema)."""
        return self._schema

    @property
    def schema_str(self) -> str:
        """The schema as registered (Avro JSON text)."""
        return self._schema_str

    @property
    def record_name(self) -> str | None:
        """Full name of the top-level named type, None for unnamed schemas (arrays, unions, primitives)."""
        return self._record_name

    def bind_registry(self, client: SchemaRegistryClient) -> None:
        """Use `client` unless this serde was built with its own `registry` or `registry_url`."""
        if self._explicit_registry or client is self._registry:
            return
        self._registry = client
        # Schema ids are only meaningful within one registry.
        self._read_schemas.clear()
        self._ids_by_ctx.clear()
        self._ids_by_subject.clear()

    # -- decoding ---------------------------------------------------------------------------------------

    def deserialize(self, data: bytes | None, ctx: SerdeContext) -> Any:
        """Decode one framed Avro record; a Kafka null stays None."""
        if data is None:
            return None
        schema_id = _schema_id(data, ctx)
        writer, reader = self._reader_for(schema_id, ctx)
        return _read(data, writer, reader, schema_id, ctx)

    def deserialize_many(self, values: list[bytes | None], ctx: SerdeContext) -> list[object]:
        """Decode a batch; each position holds the decoded object, None, or the `DecodeError` raised.

        Records are grouped by schema id so each writer schema is resolved once per batch.
        """
        out: list[object] = [None] * len(values)
        groups: dict[int, list[tuple[int, bytes]]] = {}
        for pos, data in enumerate(values):
            if data is None:
                continue
            try:
                schema_id = _schema_id(data, ctx)
            except WireFormatError as exc:
                out[pos] = exc
                continue
            groups.setdefault(schema_id, []).append((pos, data))
        for schema_id, members in groups.items():
            try:
                writer, reader = self._reader_for(schema_id, ctx)
            except DecodeError as exc:
                for pos, _ in members:
                    out[pos] = exc
                continue
            for pos, data in members:
                try:
                    out[pos] = _read(data, writer, reader, schema_id, ctx)
                except DecodeError as exc:
                    out[pos] = exc
        return out

    def _reader_for(self, schema_id: int, ctx: SerdeContext) -> tuple[ParsedSchema, ParsedSchema | None]:
        cached = self._read_schemas.get(schema_id)
        if cached is not None:
            return cached
        from confluent_kafka.schema_registry import SchemaRegistryError

        try:
            registered = self._client().get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UnknownSchemaError(
                    f"schema id {schema_id} in a record of {ctx.topic} is not in the schema registry"
                ) from exc
            raise
        if registered.schema_type not in (None, "AVRO"):
            raise WireFormatError(
                f"schema id {schema_id} in a record of {ctx.topic} is a {registered.schema_type} schema, "
                "not AVRO"
            )
        if registered.references:
            raise SchemaResolutionError(
                f"writer schema id {schema_id} uses schema references, which AvroSerde does not resolve"
            )
        try:
            writer = parse_schema(orjson.loads(registered.schema_str or ""))
        except Exception as exc:  # fastavro raises several unrelated types for a bad schema
            raise SchemaResolutionError(
                f"writer schema id {schema_id} is not a valid Avro schema: {exc}"
            ) from exc
        entry = (writer, None if self._schema is None or writer == self._schema else self._schema)
        self._read_schemas[schema_id] = entry
        return entry

    # -- encoding ---------------------------------------------------------------------------------------

    def serialize(self, obj: Any, ctx: SerdeContext) -> bytes | None:
        """Encode `obj` with this serde's schema, registering the schema on first use per subject."""
        if obj is None:
            return None
        if self._schema is None:
            raise EncodeError(f"AvroSerde(schema=None) only decodes; give it a schema to write {ctx.topic}")
        if self._validate:
            try:
                validate_datum(obj, self._schema, raise_errors=True)
            except ValidationError as exc:
                details = "; ".join(str(err) for err in exc.errors)
                raise EncodeError(
                    f"record does not match the Avro schema for {ctx.topic}: {details}"
                ) from exc
        schema_id = self._ids_by_ctx.get((ctx.topic, ctx.is_key))
        if schema_id is None:
            schema_id = self._writer_id(ctx)
        buf = BytesIO()
        buf.write(_HEADER.pack(_MAGIC, schema_id))
        try:
            schemaless_writer(buf, self._schema, obj)
        except _WRITE_ERRORS as exc:
            raise EncodeError(f"cannot encode {type(obj).__name__} as Avro for {ctx.topic}: {exc}") from exc
        return buf.getvalue()

    def _writer_id(self, ctx: SerdeContext) -> int:
        subject = self._subject_strategy(ctx.topic, ctx.is_key, self._record_name)
        schema_id = self._ids_by_subject.get(subject)
        if schema_id is None:
            schema_id = self._register(subject)
            self._ids_by_subject[subject] = schema_id
        self._ids_by_ctx[(ctx.topic, ctx.is_key)] = schema_id
        return schema_id

    def _register(self, subject: str) -> int:
        from confluent_kafka.schema_registry import Schema, SchemaRegistryError

        client = self._client()
        schema = Schema(self._schema_str, "AVRO")
        action = "register" if self._auto_register else "look up"
        try:
            if self._auto_register:
                return client.register_schema(subject, schema)
            schema_id = client.lookup_schema(subject, schema).schema_id
        except SchemaRegistryError as exc:
            # 4xx: incompatible schema or (auto_register=False) not registered; retrying cannot help.
            if 400 <= exc.http_status_code < 500:
                raise EncodeError(f"cannot {action} the schema under subject {subject!r}: {exc}") from exc
            raise
        if schema_id is None:
            raise EncodeError(f"the registry returned no schema id for subject {subject!r}")
        return schema_id

    def _client(self) -> SchemaRegistryClient:
        if self._registry is None:
            url = self._registry_url or os.environ.get(REGISTRY_URL_ENV)
            if not url:
                raise ConfigError(
                    f"AvroSerde needs a schema registry: set registry_url in the config or {REGISTRY_URL_ENV}"
                )
            self._registry = registry_client(url)
        return self._registry


def _parse_reader_schema(schema: str | dict[str, Any]) -> tuple[str, ParsedSchema]:
    try:
        loaded = orjson.loads(schema) if isinstance(schema, str) else schema
        parsed = parse_schema(loaded)
    except Exception as exc:  # fastavro raises several unrelated types for a bad schema
        raise ConfigError(f"invalid Avro schema: {exc}") from exc
    text = schema if isinstance(schema, str) else orjson.dumps(schema).decode()
    return text, parsed


def _schema_id(data: bytes, ctx: SerdeContext) -> int:
    if len(data) < _HEADER_SIZE:
        raise WireFormatError(
            f"{len(data)}-byte record in {ctx.topic} is too short for the Confluent Avro framing "
            "(magic byte 0x00 + 4-byte schema id)"
        )
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise WireFormatError(
            f"record in {ctx.topic} starts with 0x{magic:02x}, not the Confluent magic byte 0x00"
        )
    return int(schema_id)


def _read(
    data: bytes, writer: ParsedSchema, reader: ParsedSchema | None, schema_id: int, ctx: SerdeContext
) -> Any:
    buf = BytesIO(data)
    buf.seek(_HEADER_SIZE)
    try:
        return schemaless_reader(buf, writer, reader)
    except FastavroResolutionError as exc:
        raise SchemaResolutionError(
            f"cannot resolve writer schema id {schema_id} to the reader schema for {ctx.topic}: {exc}"
        ) from exc
    except _READ_ERRORS as exc:
        raise MalformedPayloadError(
            f"truncated or corrupt Avro datum (schema id {schema_id}) in {ctx.topic}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
