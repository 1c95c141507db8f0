"""Declared expectations: each check's verdict and exact violation message."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from streamsvc.validation.expectations import (
    AcceptedValues,
    Expectation,
    InRange,
    IsRecord,
    IsType,
    MatchesRegex,
    NotNull,
    accepted_values,
    first_violation,
    in_range,
    is_record,
    is_type,
    matches,
    not_null,
)

# ------------------------------------------------------------------------------------------- not_null


def test_not_null_distinguishes_missing_from_null() -> None:
    exp = not_null("id")
    assert exp.check({"other": 1}) == "id: required field is missing"
    assert exp.check({"id": None}) == "id: must not be null"


@pytest.mark.parametrize("present", [0, "", False, [], {}, 0.0, "x"])
def test_not_null_accepts_falsy_but_present_values(present: Any) -> None:
    assert not_null("id").check({"id": present}) is None


@pytest.mark.parametrize("value", [None, [1], "id", 5])
def test_not_null_on_non_record_value_reports_missing(value: Any) -> None:
    assert not_null("id").check(value) == "id: required field is missing"


# ------------------------------------------------------------------------------------------- is_type


def test_is_type_accepts_matching_types() -> None:
    assert is_type("n", int).check({"n": 3}) is None
    assert is_type("n", int, float).check({"n": 1.5}) is None
    assert is_type("s", str).check({"s": ""}) is None
    assert is_type("m", dict).check({"m": {"a": 1}}) is None


def test_is_type_rejects_other_types_with_names() -> None:
    assert is_type("n", int).check({"n": "3"}) == "n: expected int, got str"
    assert is_type("n", int, float).check({"n": [1]}) == "n: expected int|float, got list"
    assert is_type("n", int).check({"n": 1.0}) == "n: expected int, got float"


def test_is_type_bool_is_not_an_int() -> None:
    assert is_type("n", int).check({"n": True}) == "n: expected int, got bool"
    assert is_type("n", int, float).check({"n": False}) == "n: expected int|float, got bool"
    # ... unless bool is explicitly allowed
    assert is_type("flag", bool).check({"flag": True}) is None
    assert is_type("n", int, bool).check({"n": False}) is None


def test_is_type_leaves_absence_to_not_null() -> None:
    assert is_type("n", int).check({}) is None
    assert is_type("n", int).check({"n": None}) is None


# ------------------------------------------------------------------------------------------ in_range


def test_in_range_bounds_are_inclusive() -> None:
    exp = in_range("x", min=0, max=10)
    assert exp.check({"x": 0}) is None
    assert exp.check({"x": 10}) is None
    assert exp.check({"x": 5.5}) is None


def test_in_range_below_and_above() -> None:
    exp = in_range("x", min=0, max=10)
    assert exp.check({"x": -1}) == "x: -1 is below the minimum 0"
    assert exp.check({"x": 10.5}) == "x: 10.5 is above the maximum 10"


def test_in_range_with_only_one_bound() -> None:
    assert in_range("x", min=1).check({"x": 10**9}) is None
    assert in_range("x", min=1).check({"x": 0}) == "x: 0 is below the minimum 1"
    assert in_range("x", max=1).check({"x": -(10**9)}) is None
    assert in_range("x", max=1).check({"x": 2}) == "x: 2 is above the maximum 1"


def test_in_range_non_comparable_is_a_violation() -> None:
    exp = in_range("x", min=0, max=10)
    assert exp.check({"x": "abc"}) == "x: 'abc' is not comparable with the range [0, 10]"
    assert exp.check({"x": [1]}) == "x: [1] is not comparable with the range [0, 10]"
    assert in_range("x", max=3).check({"x": {}}) == "x: {} is not comparable with the range [None, 3]"


def test_in_range_ignores_absent_values() -> None:
    assert in_range("x", min=0).check({}) is None
    assert in_range("x", min=0).check({"x": None}) is None


# ----------------------------------------------------------------------------------- accepted_values


def test_accepted_values_accepts_members() -> None:
    exp = accepted_values("status", ["new", "paid"])
    assert exp.check({"status": "new"}) is None
    assert exp.check({"status": "paid"}) is None
    assert exp.values == frozenset({"new", "paid"})


def test_accepted_values_rejects_others_with_sorted_choices() -> None:
    exp = accepted_values("status", ["paid", "new"])
    assert exp.check({"status": "lost"}) == "status: 'lost' is not one of [\"'new'\", \"'paid'\"]"
    assert exp.check({"status": "NEW"}) == "status: 'NEW' is not one of [\"'new'\", \"'paid'\"]"


def test_accepted_values_unhashable_is_a_violation_not_a_crash() -> None:
    exp = accepted_values("status", ["a"])
    assert exp.check({"status": ["a"]}) == "status: ['a'] is not one of [\"'a'\"]"
    assert exp.check({"status": {"a": 1}}) == "status: {'a': 1} is not one of [\"'a'\"]"


def test_accepted_values_ignores_absent_values() -> None:
    assert accepted_values("s", ["a"]).check({}) is None
    assert accepted_values("s", ["a"]).check({"s": None}) is None


# -------------------------------------------------------------------------------------------- matches


def test_matches_uses_fullmatch() -> None:
    exp = matches("code", r"[A-Z]{3}")
    assert exp.check({"code": "ABC"}) is None
    assert exp.check({"code": "ABCD"}) == "code: 'ABCD' does not match /[A-Z]{3}/"
    assert exp.check({"code": "xABC"}) == "code: 'xABC' does not match /[A-Z]{3}/"
    assert exp.check({"code": "AB"}) == "code: 'AB' does not match /[A-Z]{3}/"


def test_matches_rejects_non_strings() -> None:
    assert matches("code", r"\d+").check({"code": 123}) == "code: 123 does not match /\\d+/"
    assert matches("code", r".*").check({"code": b"x"}) == "code: b'x' does not match /.*/"


def test_matches_ignores_absent_values() -> None:
    assert matches("code", "x").check({}) is None
    assert matches("code", "x").check({"code": None}) is None


def test_matches_compiles_eagerly_and_compares_by_pattern() -> None:
    with pytest.raises(re.error):
        matches("code", "(")
    assert matches("c", "a+") == MatchesRegex("c", "a+")
    assert matches("c", "a+") != MatchesRegex("c", "b+")


# ------------------------------------------------------------------------------------------ is_record


def test_is_record() -> None:
    exp = is_record()
    assert exp.check({}) is None
    assert exp.check({"a": 1}) is None
    assert exp.check(None) == "value must be an object, got NoneType"
    assert exp.check([1]) == "value must be an object, got list"
    assert exp.check("s") == "value must be an object, got str"
    assert exp.check(3) == "value must be an object, got int"


# -------------------------------------------------------------------------------------- dotted paths


def test_dotted_paths_descend_into_nested_dicts() -> None:
    value = {"address": {"city": "Oslo", "geo": {"lat": 95.0}, "zip": None}}
    assert not_null("address.city").check(value) is None
    assert not_null("address.zip").check(value) == "address.zip: must not be null"
    assert not_null("address.street").check(value) == "address.street: required field is missing"
    assert in_range("address.geo.lat", min=-90, max=90).check(value) == (
        "address.geo.lat: 95.0 is above the maximum 90"
    )
    assert is_type("address.city", str).check(value) is None
    assert matches("address.city", "[A-Z][a-z]+").check(value) is None
    assert accepted_values("address.city", ["Bergen"]).check(value) == (
        "address.city: 'Oslo' is not one of [\"'Bergen'\"]"
    )


@pytest.mark.parametrize(
    "value",
    [
        {"address": None},
        {"address": "Oslo"},
        {"address": ["city"]},
        {"address.city": "Oslo"},  # a literal dotted key is not a path
    ],
)
def test_dotted_path_through_non_dict_is_missing(value: Any) -> None:
    assert not_null("address.city").check(value) == "address.city: required field is missing"
    assert is_type("address.city", int).check(value) is None


# ------------------------------------------------------------------------------------ factory helpers


def test_factories_build_the_dataclasses() -> None:
    assert not_null("a") == NotNull("a")
    assert is_type("a", int, float) == IsType("a", (int, float))
    assert in_range("a", 1, 2) == InRange("a", 1, 2)
    assert accepted_values("a", iter([1, 2, 2])) == AcceptedValues("a", frozenset({1, 2}))
    assert is_record() == IsRecord()


# ----------------------------------------------------------------------------------- first_violation


@dataclass
class Recording:
    """An expectation that records being called and returns a fixed verdict."""

    verdict: str | None
    calls: list[Any] = field(default_factory=list)

    def check(self, value: Any) -> str | None:
        self.calls.append(value)
        return self.verdict


def test_first_violation_returns_none_when_all_pass() -> None:
    assert first_violation([], {"a": 1}) is None
    assert first_violation([is_record(), not_null("a"), is_type("a", int)], {"a": 1}) is None


def test_first_violation_returns_first_in_declared_order() -> None:
    value = {"qty": -1, "status": "x"}
    exps: list[Expectation] = [in_range("qty", min=0), not_null("id"), accepted_values("status", ["ok"])]
    assert first_violation(exps, value) == "qty: -1 is below the minimum 0"
    assert first_violation(list(reversed(exps)), value) == "status: 'x' is not one of [\"'ok'\"]"
    assert first_violation(exps[1:], value) == "id: required field is missing"


def test_first_violation_stops_at_first_failure() -> None:
    ok, bad, later = Recording(None), Recording("bad"), Recording("later")
    assert first_violation([ok, bad, later], {"v": 1}) == "bad"
    assert ok.calls == [{"v": 1}]
    assert bad.calls == [{"v": 1}]
    assert later.calls == []


def test_is_record_first_guards_field_checks() -> None:
    assert first_violation([is_record(), not_null("id")], [1, 2]) == "value must be an object, got list"
    assert first_violation([not_null("id"), is_record()], [1, 2]) == "id: required field is missing"


def test_nan_is_outside_every_range() -> None:
    assert in_range("x", min=0, max=10).check({"x": float("nan")}) == "x: NaN is outside the range [0, 10]"


def test_accepted_values_do_not_confuse_bool_and_int() -> None:
    assert accepted_values("x", [1]).check({"x": True}) is not None
    assert accepted_values("x", [True]).check({"x": 1}) is not None
    assert accepted_values("x", [True]).check({"x": True}) is None
    assert accepted_values("x", [1]).check({"x": 1}) is None
