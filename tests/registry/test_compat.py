"""The offline checker (pure unit tests): reasons with field paths, modes, parsing by the registry's rules,
and where the Apache `avro` package's checker gives other verdicts than the registry."""

from __future__ import annotations

import json
from typing import Any

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from streamsvc.errors import ConfigError
from streamsvc.registry.avsc import InvalidSchemaError, parse_avro
from streamsvc.registry.compat import Mode, check, reader_writer
from tests.registry.matrix import BASE, CASES, V2, customer, edit


def version(schema: dict[str, Any] | list[Any] | str, label: str) -> Any:
    return parse_avro(json.dumps(schema), label)


def test_every_matrix_case_gets_its_expected_verdict_in_every_mode() -> None:
    for case in CASES:
        history, proposed = case.texts()
        earlier = [parse_avro(text, f"v{i + 1}") for i, text in enumerate(history)]
        new = parse_avro(proposed, "new")
        for mode in Mode:
            assert (not check(mode, earlier, new)) is case.expected(mode), (case.name, mode)


def test_reasons_name_the_field_path_and_both_versions() -> None:
    old = version(V2, "v1")
    new = version(edit(V2, customer=customer({"name": "email", "type": "string"})), "v2")
    [problem] = check(Mode.BACKWARD, [old], new)
    assert problem.kind == "reader_field_missing_default_value"
    assert problem.path == "Order.customer.email"
    assert (problem.reader, problem.writer) == ("v2", "v1")
    assert str(problem).startswith("Order.customer.email: the writer has no such field")


def test_paths_through_arrays_maps_and_union_branches() -> None:
    def record(item_type: str) -> dict[str, Any]:
        line = {"type": "record", "name": "Line", "fields": [{"name": "qty", "type": item_type}]}
        return {
            "type": "record",
            "name": "Order",
            "fields": [
                {"name": "lines", "type": {"type": "array", "items": line}},
                {"name": "tags", "type": {"type": "map", "values": item_type}},
                {
                    "name": "extra",
                    "type": [
                        "null",
                        {"type": "record", "name": "Extra", "fields": [{"name": "n", "type": item_type}]},
                    ],
                },
            ],
        }

    problems = reader_writer(reader=version(record("int"), "new"), writer=version(record("string"), "old"))
    assert {(p.kind, p.path) for p in problems} == {
        ("type_mismatch", "Order.lines[].qty"),
        ("type_mismatch", "Order.tags{}"),
        ("missing_union_branch", "Order.extra"),
    }
    # A writer union read by a non-union reader: each branch is checked, and named in the path.
    reader = version({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}, "new")
    writer = version(
        {"type": "record", "name": "R", "fields": [{"name": "a", "type": ["int", "string"]}]}, "old"
    )
    [problem] = reader_writer(reader, writer)
    assert (problem.path, problem.kind) == ("R.a<string>", "type_mismatch")


def test_transitive_modes_compare_with_every_earlier_version_newest_first() -> None:
    v1 = version({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}, "v1")
    v2 = version(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}],
        },
        "v2",
    )
    v3 = version(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}],
        },
        "v3",
    )
    assert check(Mode.BACKWARD, [v1, v2], v3) == []
    [problem] = check(Mode.BACKWARD_TRANSITIVE, [v1, v2], v3)
    assert (problem.writer, problem.path) == ("v1", "R.b")
    full = check(Mode.FULL_TRANSITIVE, [v1, v2], v3)
    assert [(p.reader, p.writer) for p in full] == [("v3", "v1")]
    assert check(Mode.NONE, [v1, v2], version("string", "v4")) == []
    assert check(Mode.FULL, [], v3) == []


def test_recursive_types_terminate() -> None:
    node = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "value", "type": "int"},
            {"name": "next", "type": ["null", "Node"], "default": None},
        ],
    }
    wider = {**node, "fields": [{"name": "value", "type": "long"}, node["fields"][1]]}
    assert reader_writer(version(wider, "new"), version(node, "old")) == []
    assert [p.path for p in reader_writer(version(node, "old"), version(wider, "new"))] == ["Node.value"]


def test_modes_parse_in_the_registry_spelling() -> None:
    assert Mode.parse("backward-transitive") is Mode.BACKWARD_TRANSITIVE
    assert Mode.FULL.backward and Mode.FULL.forward and not Mode.FULL.transitive
    with pytest.raises(ConfigError, match="unknown compatibility mode 'SIDEWAYS'"):
        Mode.parse("SIDEWAYS")


@pytest.mark.parametrize(
    ("field_type", "default", "valid"),
    [
        ("int", "1", False),
        ("int", 2**31, False),
        ("long", 2**31, True),
        ("double", 1, True),
        ("string", None, False),
        (["null", "string"], None, True),
        (["null", "string"], "x", True),  # Java Avro 1.12: a union default may match any branch
        ({"type": "array", "items": "int"}, [1, "2"], False),
        ({"type": "map", "values": "int"}, {"a": 1}, True),
        ("boolean", 0, False),
    ],
)
def test_defaults_are_validated_as_java_avro_does(field_type: Any, default: Any, valid: bool) -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "f", "type": field_type, "default": default}],
    }
    if valid:
        parse_avro(json.dumps(schema), "s.avsc")
    else:
        with pytest.raises(InvalidSchemaError, match=r"s.avsc: invalid default for field R\.f"):
            parse_avro(json.dumps(schema), "s.avsc")


def test_invalid_schemas_name_the_file() -> None:
    with pytest.raises(InvalidSchemaError, match=r"bad\.avsc: not JSON"):
        parse_avro("{", "bad.avsc")
    with pytest.raises(InvalidSchemaError, match=r"bad\.avsc: not a valid Avro schema"):
        parse_avro('{"type": "record", "name": "R", "fields": [{"name": "a", "type": "nope"}]}', "bad.avsc")


def test_a_reader_field_matching_two_writer_fields_is_an_error_as_in_java() -> None:
    writer = version(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}],
        },
        "old",
    )
    reader = version(
        {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "aliases": ["b"]}]}, "new"
    )
    with pytest.raises(InvalidSchemaError, match="matches several fields"):
        reader_writer(reader, writer)


def _apache_avro_accepts(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    return result.compatibility is SchemaCompatibilityType.compatible


def test_where_the_apache_avro_python_checker_differs_from_the_registry() -> None:
    """avro.compatibility does not resolve a named type's aliases against its namespace (Java, and so the
    registry, does): a namespaced record renamed with its old short name as alias is compatible for the
    registry (see the matrix case record_renamed_with_short_alias) and not for the Python port."""
    renamed = {**BASE, "name": "Purchase", "aliases": ["Order"]}
    assert not _apache_avro_accepts(reader=renamed, writer=BASE)
    assert reader_writer(version(renamed, "new"), version(BASE, "old")) == []
    # With the alias written as a full name both agree.
    full_alias = {**renamed, "aliases": ["shop.Order"]}
    assert _apache_avro_accepts(reader=full_alias, writer=BASE)
    assert reader_writer(version(full_alias, "new"), version(BASE, "old")) == []
    # Everything else in the matrix gets the same verdict from both.
    for case in CASES:
        if case.name == "record_renamed_with_short_alias":
            continue
        new = case.proposed
        for old in case.history:
            ours = not reader_writer(version(new, "new"), version(old, "old"))
            assert _apache_avro_accepts(new, old) is ours, case.name
            ours = not reader_writer(version(old, "old"), version(new, "new"))
            assert _apache_avro_accepts(old, new) is ours, case.name
