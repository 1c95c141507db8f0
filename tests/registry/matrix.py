"""The compatibility matrix: schema changes with several earlier versions, and the verdict of each mode.

Expected verdicts are worked out by hand from the Avro resolution rules; the offline checker and the
real registry must both give them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from streamsvc.registry.compat import Mode

B, BT, F, FT, FU, FUT = (
    Mode.BACKWARD,
    Mode.BACKWARD_TRANSITIVE,
    Mode.FORWARD,
    Mode.FORWARD_TRANSITIVE,
    Mode.FULL,
    Mode.FULL_TRANSITIVE,
)

BASE: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "qty", "type": "int"},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {
            "name": "customer",
            "type": {"type": "record", "name": "Customer", "fields": [{"name": "name", "type": "string"}]},
        },
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def edit(schema: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `schema` with fields replaced (`name=dict`), removed (`name=None`) or appended."""
    out = copy.deepcopy(schema)
    fields = []
    for field in out["fields"]:
        if field["name"] in changes:
            replacement = changes.pop(field["name"])
            if replacement is not None:
                fields.append(replacement)
        else:
            fields.append(field)
    out["fields"] = fields + [c for c in changes.values() if c is not None]
    return out


def status(*symbols: str, default: str | None = None) -> dict[str, Any]:
    enum: dict[str, Any] = {"type": "enum", "name": "Status", "symbols": list(symbols)}
    if default is not None:
        enum["default"] = default
    return {"name": "status", "type": enum}


def customer(*extra: dict[str, Any]) -> dict[str, Any]:
    fields = [{"name": "name", "type": "string"}, *extra]
    return {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": fields}}


@dataclass(frozen=True)
class Case:
    name: str
    history: tuple[dict[str, Any], ...]  # earlier versions, oldest first
    proposed: dict[str, Any]
    compatible_in: frozenset[Mode]  # besides NONE, which accepts everything

    def texts(self) -> tuple[list[str], str]:
        return [json.dumps(v) for v in self.history], json.dumps(self.proposed)

    def expected(self, mode: Mode) -> bool:
        return mode is Mode.NONE or mode in self.compatible_in


def case(name: str, history: list[dict[str, Any]], proposed: dict[str, Any], *modes: Mode) -> Case:
    return Case(name, tuple(history), proposed, frozenset(modes))


CHANNEL = {"name": "channel", "type": "string", "default": "web"}
V1 = edit(BASE, note=None)  # the first version had no note yet
V2 = BASE

CASES = [
    case(
        "field_added_with_default",
        [V1, V2],
        edit(V2, coupon={"name": "coupon", "type": ["null", "string"], "default": None}),
        B,
        BT,
        F,
        FT,
        FU,
        FUT,
    ),
    case(
        "field_added_without_default", [V1, V2], edit(V2, region={"name": "region", "type": "string"}), F, FT
    ),
    case(
        "field_removed_with_default",
        [V1, edit(V2, channel=CHANNEL)],
        edit(V2, channel=CHANNEL, note=None),
        B,
        BT,
        F,
        FT,
        FU,
        FUT,
    ),
    case("field_removed_without_default", [V1, V2], edit(V2, qty=None), B, BT),
    case("int_to_long_promotion", [V1, V2], edit(V2, qty={"name": "qty", "type": "long"}), B, BT),
    case("enum_symbol_added", [V1, V2], edit(V2, status=status("NEW", "PAID", "REFUNDED")), B, BT),
    case(
        "enum_symbol_added_reader_enum_default",
        [
            edit(V1, status=status("NEW", "PAID", default="NEW")),
            edit(V2, status=status("NEW", "PAID", default="NEW")),
        ],
        edit(V2, status=status("NEW", "PAID", "REFUNDED", default="NEW")),
        B,
        BT,
        F,
        FT,
        FU,
        FUT,
    ),
    case("enum_symbol_removed", [V1, V2], edit(V2, status=status("NEW")), F, FT),
    case(
        "enum_symbol_removed_new_enum_default",
        [V1, V2],
        edit(V2, status=status("NEW", default="NEW")),
        B,
        BT,
        F,
        FT,
        FU,
        FUT,
    ),
    case(
        "field_renamed_with_alias",
        [V1, V2],
        edit(V2, qty={"name": "quantity", "type": "int", "aliases": ["qty"]}),
        B,
        BT,
    ),
    case(
        "field_renamed_without_alias",
        [V1, V2],
        edit(V2, qty={"name": "quantity", "type": "int"}),
    ),
    case(
        "record_renamed_with_short_alias",  # the alias resolves in the record's namespace: shop.Order
        [V1, V2],
        {**V2, "name": "Purchase", "aliases": ["Order"]},
        B,
        BT,
    ),
    case(
        "nested_record_field_added_without_default",
        [V1, V2],
        edit(V2, customer=customer({"name": "email", "type": "string"})),
        F,
        FT,
    ),
    case(
        "nested_record_field_added_with_default",
        [V1, V2],
        edit(V2, customer=customer({"name": "email", "type": ["null", "string"], "default": None})),
        B,
        BT,
        F,
        FT,
        FU,
        FUT,
    ),
    case(
        "union_widened",
        [V1, V2],
        edit(V2, note={"name": "note", "type": ["null", "string", "long"], "default": None}),
        B,
        BT,
    ),
    case(
        "union_narrowed",
        [V1, V2],
        edit(V2, note={"name": "note", "type": ["null"], "default": None}),
        F,
        FT,
    ),
    case(
        "field_made_optional",  # int -> union [null, int]
        [V1, V2],
        edit(V2, qty={"name": "qty", "type": ["null", "int"], "default": None}),
        B,
        BT,
    ),
    case("type_changed", [V1, V2], edit(V2, qty={"name": "qty", "type": "string"})),
    case(
        "string_to_bytes",
        [V1, V2],
        edit(V2, note={"name": "note", "type": ["null", "bytes"], "default": None}),
        B,
        BT,
        F,
        FT,
        FU,
        FUT,
    ),
    # Transitivity: the latest version accepts the change, an older one does not.
    case(
        "default_dropped_older_version_lacks_field",
        [edit(V2, channel=None), edit(V2, channel=CHANNEL)],
        edit(V2, channel={"name": "channel", "type": "string"}),
        B,
        F,
        FT,
        FU,
    ),
    case(
        "field_removed_older_reader_needs_it",
        [edit(V2, channel={"name": "channel", "type": "string"}), edit(V2, channel=CHANNEL)],
        edit(V2, channel=None),
        B,
        BT,
        F,
        FU,
    ),
    case(
        "type_changed_back_and_forth",
        [edit(V2, qty={"name": "qty", "type": "string"}), V2, edit(V2, qty={"name": "qty", "type": "long"})],
        edit(V2, qty={"name": "qty", "type": "long"}, note=None),
        B,
        F,
        FU,
    ),
]
