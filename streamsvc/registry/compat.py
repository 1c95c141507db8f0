"""Schema compatibility offline, with the verdicts of the schema registry.

The registry we ship (Apicurio) and the Confluent Schema Registry both decide with Java Avro's
`org.apache.avro.SchemaCompatibility` (reader/writer check), applied per mode as: BACKWARD = the new
schema reads data written with the latest version, FORWARD = the latest version reads data written with
the new one, FULL = both; the `_TRANSITIVE` modes check every earlier version instead of the latest.

The reader/writer check below follows Java Avro 1.12's algorithm rule for rule. It is not the Apache
`avro` Python package's `avro.compatibility` because that port gives different verdicts from the
registry in one case and cannot say where the other problems are (docs/schemas.md, "Why not
avro.compatibility"): it compares a reader's record/enum/fixed aliases without resolving them against
the namespace (Java does, so a renamed namespaced record with its old name as alias is compatible for the
registry and not for the Python port), and it merges messages and locations into unordered sets and
restarts locations inside unions, so "every reason with its field path" cannot be derived from it.
Schemas are parsed with the `avro` package (`streamsvc.registry.avsc`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from avro.schema import ArraySchema, EnumSchema, FixedSchema, MapSchema, RecordSchema, Schema, UnionSchema

from streamsvc.errors import ConfigError
from streamsvc.registry.avsc import InvalidSchemaError, SchemaVersion, aliases, describe, short_name

# Java Avro's type promotions: writer type -> reader types that read it.
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


class Mode(StrEnum):
    """The seven compatibility modes, named as the Confluent Schema Registry names them."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """The new schema must read data written with the earlier version(s)."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """The earlier version(s) must read data written with the new schema."""
        return self.value.startswith(("FORWARD", "FULL"))

    @classmethod
    def parse(cls, text: str) -> Mode:
        try:
            return cls(text.strip().upper().replace("-", "_"))
        except ValueError:
            modes = ", ".join(m.value for m in cls)
            raise ConfigError(f"unknown compatibility mode {text!r}; use one of {modes}") from None


@dataclass(frozen=True)
class Incompatibility:
    """One reason a reader cannot read a writer's data, at a field path such as `Order.lines[].sku`.

    Path notation: `.name` a record field, `[]` array items, `{}` map values, `<T>` union branch T.
    """

    kind: str  # Java Avro's SchemaIncompatibilityType, lower case: type_mismatch, name_mismatch, ...
    path: str
    message: str
    reader: str
    writer: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (reading data written with {self.writer} using {self.reader})"


def check(mode: Mode, earlier: Sequence[SchemaVersion], proposed: SchemaVersion) -> list[Incompatibility]:
    """Every incompatibility of `proposed` with the `earlier` versions (oldest first) under `mode`."""
    if mode is Mode.NONE or not earlier:
        return []
    against = list(reversed(earlier)) if mode.transitive else [earlier[-1]]
    found: list[Incompatibility] = []
    for old in against:
        if mode.backward:
            found.extend(reader_writer(reader=proposed, writer=old))
        if mode.forward:
            found.extend(reader_writer(reader=old, writer=proposed))
    return found


def reader_writer(reader: SchemaVersion, writer: SchemaVersion) -> list[Incompatibility]:
    """Why data written with `writer` cannot be read with `reader` (empty: it can)."""
    found = _Checker().compare(reader.parsed, writer.parsed, short_name(reader.parsed))
    return [Incompatibility(kind, path, message, reader.label, writer.label) for kind, path, message in found]


_Found = tuple[str, str, str]  # (kind, path, message)


class _Checker:
    """Java Avro's ReaderWriterCompatibilityChecker: memoised per (reader, writer) pair of schema
    objects, a pair met again while it is still being checked counts as compatible (recursive types)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[int, int], list[_Found] | None] = {}
        self._keep: list[Schema] = []  # the memo is keyed by id(): keep the objects alive

    def compare(self, reader: Schema, writer: Schema, path: str) -> list[_Found]:
        key = (id(reader), id(writer))
        if key in self._memo:
            return self._memo[key] or []
        self._memo[key] = None
        self._keep.extend((reader, writer))
        found = self._calculate(reader, writer, path)
        self._memo[key] = found
        return found

    def _calculate(self, reader: Schema, writer: Schema, path: str) -> list[_Found]:
        rtype, wtype = reader.type, writer.type
        if rtype == wtype:
            if isinstance(reader, ArraySchema):
                return self.compare(reader.items, _as(writer, ArraySchema).items, f"{path}[]")
            if isinstance(reader, MapSchema):
                return self.compare(reader.values, _as(writer, MapSchema).values, f"{path}{{}}")
            if isinstance(reader, FixedSchema):
                found = _names(reader, writer, path)
                if reader.size != _as(writer, FixedSchema).size:
                    message = f"fixed size {reader.size} cannot read fixed size {writer.size}"  # type: ignore[attr-defined]
                    found.append(("fixed_size_mismatch", path, message))
                return found
            if isinstance(reader, EnumSchema):
                return _names(reader, writer, path) + _enum_symbols(reader, _as(writer, EnumSchema), path)
            if isinstance(reader, RecordSchema):
                return _names(reader, writer, path) + self._fields(reader, _as(writer, RecordSchema), path)
            if isinstance(reader, UnionSchema):
                found = []
                for branch in _as(writer, UnionSchema).schemas:
                    if self.compare(reader, branch, path):  # only the verdict counts, as in Java
                        message = f"the reader's union has no branch for the writer's {describe(branch)}"
                        found.append(("missing_union_branch", path, message))
                return found
            return []  # the same primitive type
        if isinstance(writer, UnionSchema):
            found = []
            for branch in writer.schemas:
                found.extend(self.compare(reader, branch, f"{path}<{short_name(branch)}>"))
            return found
        if isinstance(reader, UnionSchema):
            for branch in reader.schemas:
                if not self.compare(branch, writer, path):
                    return []
            message = f"the reader's union has no branch for the writer's {describe(writer)}"
            return [("missing_union_branch", path, message)]
        if rtype in _PROMOTIONS.get(wtype, ()):
            return []
        message = f"reader type {describe(reader)} cannot read writer type {describe(writer)}"
        return [("type_mismatch", path, message)]

    def _fields(self, reader: RecordSchema, writer: RecordSchema, path: str) -> list[_Found]:
        found: list[_Found] = []
        for field in reader.fields:
            field_path = f"{path}.{field.name}"
            written = _writer_field(writer, field)
            if written is not None:
                found.extend(self.compare(field.type, written.type, field_path))
            elif field.has_default:
                continue
            elif isinstance(field.type, EnumSchema) and field.type.default is not None:
                # Java compares the enum with the writer's *record* here: always a type mismatch.
                found.extend(self.compare(field.type, writer, field_path))
            else:
                message = "the writer has no such field and the reader's field has no default"
                found.append(("reader_field_missing_default_value", field_path, message))
        return found


def _writer_field(writer: RecordSchema, field: Any) -> Any:
    """The writer's field for a reader field: by name, else by one of the reader field's aliases."""
    matches = [writer.fields_dict[n] for n in [field.name, *aliases(field)] if n in writer.fields_dict]
    if len(matches) > 1:
        # Java Avro raises here; the registry answers HTTP 422.
        raise InvalidSchemaError(
            f"reader field {field.name} matches several fields of the writer record {writer.fullname}: "
            + ", ".join(m.name for m in matches)
        )
    return matches[0] if matches else None


def _names(reader: Schema, writer: Schema, path: str) -> list[_Found]:
    """Java's `schemaNameEquals`: equal simple names, or the writer's full name among the reader's aliases
    (an alias without a dot is in the reader type's namespace)."""
    if reader.name == writer.name:  # type: ignore[attr-defined]
        return []
    namespace = reader.namespace  # type: ignore[attr-defined]
    full = {a if "." in a or not namespace else f"{namespace}.{a}" for a in aliases(reader)}
    if writer.fullname in full:  # type: ignore[attr-defined]
        return []
    message = f"reader {reader.type} {reader.fullname} does not read {writer.fullname} (no alias names it)"  # type: ignore[attr-defined]
    return [("name_mismatch", path, message)]


def _enum_symbols(reader: EnumSchema, writer: EnumSchema, path: str) -> list[_Found]:
    missing = sorted(set(writer.symbols) - set(reader.symbols))
    if not missing or (reader.default is not None and reader.default in reader.symbols):
        return []
    message = f"the reader's enum {reader.fullname} lacks the writer's symbols {missing} and has no default"
    return [("missing_enum_symbols", path, message)]


def _as(schema: Schema, kind: type[Any]) -> Any:
    assert isinstance(schema, kind)
    return schema
