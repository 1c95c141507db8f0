"""Record expectations (DLQ stage `validate`)."""

from streamsvc.validation.expectations import (
    Expectation,
    accepted_values,
    first_violation,
    in_range,
    is_record,
    is_type,
    matches,
    not_null,
)

__all__ = [
    "Expectation",
    "accepted_values",
    "first_violation",
    "in_range",
    "is_record",
    "is_type",
    "matches",
    "not_null",
]
