"""What changed between two versions of a schema, field by field (docs and field order are ignored)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from avro.schema import ArraySchema, EnumSchema, FixedSchema, MapSchema, RecordSchema, Schema, UnionSchema

from streamsvc.registry.avsc import SchemaVersion, aliases, describe, short_name


@dataclass(frozen=True)
class Change:
    """`+` added, `-` removed, `~` changed, at a field path (notation of `compat.Incompatibility`)."""

    sign: str
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.sign} {self.path}: {self.what}"


def diff(old: SchemaVersion, new: SchemaVersion) -> list[Change]:
    """The changes from `old` to `new`; empty when they are the same schema."""
    return _Differ().schemas(old.parsed, new.parsed, short_name(new.parsed))


class _Differ:
    def __init__(self) -> None:
        self._seen: set[tuple[int, int]] = set()

    def schemas(self, old: Schema, new: Schema, path: str) -> list[Change]:
        if (id(old), id(new)) in self._seen:  # a recursive type, already being compared
            return []
        self._seen.add((id(old), id(new)))
        if isinstance(old, UnionSchema) and isinstance(new, UnionSchema):
            return self._unions(old, new, path)
        if old.type != new.type:
            return [Change("~", path, f"{describe(old)} -> {describe(new)}")]
        changes = _named(old, new, path)
        if isinstance(old, RecordSchema) and isinstance(new, RecordSchema):
            changes += self._fields(old, new, path)
        elif isinstance(old, EnumSchema) and isinstance(new, EnumSchema):
            changes += _enum(old, new, path)
        elif isinstance(old, FixedSchema) and isinstance(new, FixedSchema) and old.size != new.size:
            changes.append(Change("~", path, f"fixed size {old.size} -> {new.size}"))
        elif isinstance(old, ArraySchema) and isinstance(new, ArraySchema):
            changes += self.schemas(old.items, new.items, f"{path}[]")
        elif isinstance(old, MapSchema) and isinstance(new, MapSchema):
            changes += self.schemas(old.values, new.values, f"{path}{{}}")
        elif old.props.get("logicalType") != new.props.get("logicalType"):
            changes.append(Change("~", path, f"{describe(old)} -> {describe(new)}"))
        return changes

    def _unions(self, old: UnionSchema, new: UnionSchema, path: str) -> list[Change]:
        before = {_branch_key(b): b for b in old.schemas}
        after = {_branch_key(b): b for b in new.schemas}
        changes = [
            Change("-", f"{path}<{short_name(b)}>", "union branch removed")
            for k, b in before.items()
            if k not in after
        ]
        changes += [
            Change("+", f"{path}<{short_name(b)}>", "union branch added")
            for k, b in after.items()
            if k not in before
        ]
        for key in before.keys() & after.keys():
            changes += self.schemas(before[key], after[key], f"{path}<{short_name(after[key])}>")
        order_before = [k for k in before if k in after]
        order_after = [k for k in after if k in before]
        if order_before != order_after:
            changes.append(Change("~", path, "union branches reordered (the default must match a branch)"))
        return changes

    def _fields(self, old: RecordSchema, new: RecordSchema, path: str) -> list[Change]:
        changes: list[Change] = []
        matched: set[str] = set()
        for field in new.fields:
            field_path = f"{path}.{field.name}"
            previous = old.fields_dict.get(field.name)
            if previous is None:
                renamed = [a for a in aliases(field) if a in old.fields_dict]
                if renamed:
                    previous = old.fields_dict[renamed[0]]
                    changes.append(Change("~", field_path, f"renamed from {previous.name} (alias)"))
            if previous is None:
                changes.append(Change("+", field_path, _field_text(field)))
                continue
            matched.add(previous.name)
            changes += _default(previous, field, field_path)
            changes += self.schemas(previous.type, field.type, field_path)
        for field in old.fields:
            if field.name not in matched:
                changes.append(Change("-", f"{path}.{field.name}", _field_text(field)))
        return changes


def _named(old: Schema, new: Schema, path: str) -> list[Change]:
    changes = []
    if isinstance(old, RecordSchema | EnumSchema | FixedSchema) and old.fullname != new.fullname:  # type: ignore[attr-defined]
        changes.append(Change("~", path, f"renamed {old.fullname} -> {new.fullname}"))  # type: ignore[attr-defined]
    if sorted(aliases(old)) != sorted(aliases(new)):
        changes.append(Change("~", path, f"aliases {sorted(aliases(old))} -> {sorted(aliases(new))}"))
    return changes


def _enum(old: EnumSchema, new: EnumSchema, path: str) -> list[Change]:
    changes = [Change("+", path, f"enum symbol {s}") for s in new.symbols if s not in old.symbols]
    changes += [Change("-", path, f"enum symbol {s}") for s in old.symbols if s not in new.symbols]
    if old.default != new.default:
        changes.append(Change("~", path, f"enum default {old.default} -> {new.default}"))
    return changes


def _default(old: Any, new: Any, path: str) -> list[Change]:
    if old.has_default and not new.has_default:
        return [Change("-", path, f"default {json.dumps(old.default)}")]
    if new.has_default and not old.has_default:
        return [Change("+", path, f"default {json.dumps(new.default)}")]
    if old.has_default and old.default != new.default:
        return [Change("~", path, f"default {json.dumps(old.default)} -> {json.dumps(new.default)}")]
    return []


def _field_text(field: Any) -> str:
    default = f" = {json.dumps(field.default)}" if field.has_default else " (no default)"
    return f"field {describe(field.type)}{default}"


def _branch_key(schema: Schema) -> str:
    named = isinstance(schema, RecordSchema | EnumSchema | FixedSchema)
    return str(schema.fullname) if named else str(schema.type)  # type: ignore[attr-defined]
