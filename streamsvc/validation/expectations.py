"""Declared expectations on decoded records: not-null, type, range, accepted values, regex.

An expectation is a small frozen object with a `check(value) -> str | None` method that returns the
violation message or None. Fields are addressed by a dotted path into dicts (`"address.city"`).
A failing expectation sends the record to the DLQ with stage `validate`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

_MISSING = object()


def _lookup(value: Any, path: str) -> Any:
    current = value
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


class Expectation(Protocol):
    def check(self, value: Any) -> str | None: ...


@dataclass(frozen=True)
class NotNull:
    field: str

    def check(self, value: Any) -> str | None:
        got = _lookup(value, self.field)
        if got is _MISSING:
            return f"{self.field}: required field is missing"
        if got is None:
            return f"{self.field}: must not be null"
        return None


@dataclass(frozen=True)
class IsType:
    field: str
    types: tuple[type, ...]

    def check(self, value: Any) -> str | None:
        got = _lookup(value, self.field)
        if got is _MISSING or got is None:
            return None  # absence is NotNull's business
        # bool is an int subclass; a flag is never a valid number here.
        if isinstance(got, bool) and bool not in self.types:
            return f"{self.field}: expected {self._names()}, got bool"
        if not isinstance(got, self.types):
            return f"{self.field}: expected {self._names()}, got {type(got).__name__}"
        return None

    def _names(self) -> str:
        return "|".join(t.__name__ for t in self.types)


@dataclass(frozen=True)
class InRange:
    field: str
    min: float | None = None
    max: float | None = None

    def check(self, value: Any) -> str | None:
        got = _lookup(value, self.field)
        if got is _MISSING or got is None:
            return None
        if got != got:  # NaN compares false with every bound
            return f"{self.field}: NaN is outside the range [{self.min}, {self.max}]"
        try:
            if self.min is not None and got < self.min:
                return f"{self.field}: {got!r} is below the minimum {self.min}"
            if self.max is not None and got > self.max:
                return f"{self.field}: {got!r} is above the maximum {self.max}"
        except TypeError:
            return f"{self.field}: {got!r} is not comparable with the range [{self.min}, {self.max}]"
        return None


@dataclass(frozen=True)
class AcceptedValues:
    field: str
    values: frozenset[Any]
    _tagged: frozenset[tuple[bool, Any]] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tagged", frozenset((isinstance(v, bool), v) for v in self.values))

    def check(self, value: Any) -> str | None:
        got = _lookup(value, self.field)
        if got is _MISSING or got is None:
            return None
        try:  # tagged with bool-ness so that True is not accepted for 1 (bool is an int subclass)
            ok = (isinstance(got, bool), got) in self._tagged
        except TypeError:  # unhashable
            ok = False
        return None if ok else f"{self.field}: {got!r} is not one of {sorted(map(repr, self.values))}"


@dataclass(frozen=True)
class MatchesRegex:
    field: str
    pattern: str
    _compiled: re.Pattern[str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile(self.pattern))

    def check(self, value: Any) -> str | None:
        got = _lookup(value, self.field)
        if got is _MISSING or got is None:
            return None
        if not isinstance(got, str) or self._compiled.fullmatch(got) is None:
            return f"{self.field}: {got!r} does not match /{self.pattern}/"
        return None


@dataclass(frozen=True)
class IsRecord:
    """The value itself must be a mapping (JSON object / Avro record), not null or a scalar."""

    def check(self, value: Any) -> str | None:
        return None if isinstance(value, dict) else f"value must be an object, got {type(value).__name__}"


def not_null(field_: str) -> NotNull:
    return NotNull(field_)


def is_type(field_: str, *types: type) -> IsType:
    return IsType(field_, tuple(types))


def in_range(field_: str, min: float | None = None, max: float | None = None) -> InRange:
    return InRange(field_, min, max)


def accepted_values(field_: str, values: Iterable[Any]) -> AcceptedValues:
    return AcceptedValues(field_, frozenset(values))


def matches(field_: str, pattern: str) -> MatchesRegex:
    return MatchesRegex(field_, pattern)


def is_record() -> IsRecord:
    return IsRecord()


def first_violation(expectations: Sequence[Expectation], value: Any) -> str | None:
    """The first violated expectation's message, or None when the record passes all of them."""
    for exp in expectations:
        msg = exp.check(value)
        if msg is not None:
            return msg
    return None
