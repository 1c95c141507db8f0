"""Types shared by the join engines."""

from __future__ import annotations

from typing import Any, Literal

JoinType = Literal["inner", "left"]
JOIN_TYPES: tuple[JoinType, ...] = ("inner", "left")

Row = dict[str, Any]
"""A table row: Debezium's `after` image."""


def check_how(how: str) -> JoinType:
    if how == "inner":
        return "inner"
    if how == "left":
        return "left"
    raise ValueError(f"how must be one of {JOIN_TYPES}, got {how!r}")
