"""Avro schema texts parsed by the rules the schema registry applies (Java Avro's `Schema.Parser`).

Parsing is the Apache `avro` package's; on top of it, field defaults are validated the way Java Avro
1.12 validates them (its parser rejects a default that does not match the field's type, the
registry answers such a schema with HTTP 422, while the Python parser accepts it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import avro.errors
import avro.schema
from avro.schema import ArraySchema, EnumSchema, FixedSchema, MapSchema, RecordSchema, Schema, UnionSchema

from streamsvc.errors import ConfigError


class InvalidSchemaError(ConfigError):
    """A schema text is not valid Avro (the registry would refuse it with HTTP 422)."""


@dataclass(frozen=True, eq=False)
class SchemaVersion:
    """One Avro schema with where it came from: a file, a git revision or a registry version."""

    label: str
    text: str
    parsed: Schema = field(repr=False)

    @property
    def name(self) -> str | None:
        """Full name of the top-level named type; None for arrays, maps, unions and primitives."""
        fullname = getattr(self.parsed, "fullname", None)
        return str(fullname) if fullname else None

    def canonical(self) -> str:
        """Avro's Parsing Canonical Form: equal for schemas that differ only in docs, order of keys..."""
        return str(self.parsed.canonical_form)


def parse_avro(text: str, label: str) -> SchemaVersion:
    """Parse an Avro schema text; `InvalidSchemaError` names `label` and what is wrong."""
    try:
        json.loads(text)
    except ValueError as exc:
        raise InvalidSchemaError(f"{label}: not JSON: {exc}") from exc
    try:
        parsed = avro.schema.parse(text)
    except avro.errors.AvroException as exc:
        raise InvalidSchemaError(f"{label}: not a valid Avro schema: {exc}") from exc
    _check_defaults(parsed, label, set())
    return SchemaVersion(label=label, text=text, parsed=parsed)


def _check_defaults(schema: Schema, label: str, seen: set[int]) -> None:
    if id(schema) in seen:
        return
    seen.add(id(schema))
    if isinstance(schema, RecordSchema):
        for fld in schema.fields:
            if fld.has_default and not valid_default(fld.type, fld.default):
                raise InvalidSchemaError(
                    f"{label}: invalid default for field {schema.name}.{fld.name}: "
                    f"{json.dumps(fld.default)} is not a {describe(fld.type)}"
                )
            _check_defaults(fld.type, label, seen)
    elif isinstance(schema, ArraySchema):
        _check_defaults(schema.items, label, seen)
    elif isinstance(schema, MapSchema):
        _check_defaults(schema.values, label, seen)
    elif isinstance(schema, UnionSchema):
        for branch in schema.schemas:
            _check_defaults(branch, label, seen)


def valid_default(schema: Schema, value: Any) -> bool:
    """Java Avro 1.12's `Schema.isValidDefault`: a union default may match any branch."""
    kind = schema.type
    if kind in ("string", "bytes", "enum", "fixed"):
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        limit = 2**31 if kind == "int" else 2**63
        return isinstance(value, int) and not isinstance(value, bool) and -limit <= value < limit
    if kind in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(schema, ArraySchema):
        return isinstance(value, list) and all(valid_default(schema.items, v) for v in value)
    if isinstance(schema, MapSchema):
        return isinstance(value, dict) and all(valid_default(schema.values, v) for v in value.values())
    if isinstance(schema, UnionSchema):
        return any(valid_default(branch, value) for branch in schema.schemas)
    if isinstance(schema, RecordSchema):
        if not isinstance(value, dict):
            return False
        for fld in schema.fields:
            if fld.name in value:
                item = value[fld.name]
            elif fld.has_default:
                item = fld.default
            else:
                return False
            if not valid_default(fld.type, item):
                return False
        return True
    return False


def describe(schema: Schema) -> str:
    """A short type description: `int`, `record shop.Customer`, `union [null, string]`, `array<long>`."""
    if isinstance(schema, UnionSchema):
        return "union [" + ", ".join(describe(branch) for branch in schema.schemas) + "]"
    if isinstance(schema, EnumSchema | FixedSchema | RecordSchema):
        return f"{schema.type} {schema.fullname}"
    if isinstance(schema, ArraySchema):
        return f"array<{describe(schema.items)}>"
    if isinstance(schema, MapSchema):
        return f"map<{describe(schema.values)}>"
    logical = schema.props.get("logicalType")
    return f"{schema.type} ({logical})" if logical else str(schema.type)


def aliases(schema_or_field: Any) -> list[str]:
    """The `aliases` of a named type or a field, as written (not resolved against a namespace)."""
    found = schema_or_field.props.get("aliases")
    return [str(a) for a in found] if isinstance(found, list) else []


def short_name(schema: Schema) -> str:
    """The simple name of a named type, else its type: how field paths start and name union branches."""
    if isinstance(schema, EnumSchema | FixedSchema | RecordSchema):
        return str(schema.name)
    return str(schema.type)
