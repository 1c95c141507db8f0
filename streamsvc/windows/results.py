"""What the window operator hands back to the runtime."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt


class WindowResult(NamedTuple):
    """One window's value, keyed by (key, start_ms, end_ms) with the window half-open ``[start, end)``.

    ``tombstone=True`` (update mode, session windows only) retracts a previously emitted session that
    has since merged into a larger one: produce a tombstone for that (key, start, end). (A NamedTuple:
    one is built per emitted window, and that is several times cheaper than a frozen dataclass.)
    """

    key: Hashable
    start_ms: int
    end_ms: int
    value: Any
    tombstone: bool = False


@dataclass(frozen=True, slots=True)
class WindowOutput:
    """Result of one batch: results to produce, and which input rows were late (DLQ stage `late`)."""

    results: list[WindowResult]
    late: npt.NDArray[np.bool_]
    watermark_ms: int | None
    """The partition's watermark after the batch (None before any record)."""
