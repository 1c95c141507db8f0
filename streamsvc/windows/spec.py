"""Window definitions (pure data). BRIEF §3.4.

Every window is reported as a half-open range ``[start_ms, end_ms)`` and is *closed* (final, purged,
and any record that could only land in it is late) once the partition's watermark ``wm`` satisfies
``end_ms + grace_ms <= wm``. The watermark itself is defined in `streamsvc.windows.operator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Emit = Literal["final", "update"]
"""`final`: each window once, when it closes. `update`: every window a batch changed, after that batch."""

EMIT_MODES: tuple[Emit, ...] = ("final", "update")


def _check(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Hopping:
    """Fixed windows ``[s, s + size_ms)`` for every multiple ``s`` of ``advance_ms`` (epoch-aligned).

    A record at ``t`` belongs to every such window with ``s <= t < s + size_ms``: ``floor`` or ``ceil``
    of ``size_ms / advance_ms`` windows, never none, as ``0 < advance_ms <= size_ms``.
    """

    size_ms: int
    advance_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        _check("size_ms", self.size_ms, 1)
        _check("advance_ms", self.advance_ms, 1)
        _check("grace_ms", self.grace_ms, 0)
        if self.advance_ms > self.size_ms:
            raise ValueError(f"advance_ms ({self.advance_ms}) must not exceed size_ms ({self.size_ms})")


@dataclass(frozen=True, slots=True)
class Tumbling:
    """Hopping windows with ``advance_ms == size_ms``: each record is in exactly one window
    ``[s, s + size_ms)`` with ``s = floor(t / size_ms) * size_ms``."""

    size_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        _check("size_ms", self.size_ms, 1)
        _check("grace_ms", self.grace_ms, 0)

    def as_hopping(self) -> Hopping:
        return Hopping(self.size_ms, self.size_ms, self.grace_ms)


@dataclass(frozen=True, slots=True)
class Sliding:
    """Kafka Streams ``SlidingWindows`` with time difference ``d = size_ms``, windows inclusive at both ends.

    Per key, with ``A`` the key's accepted (non-late) records, the windows that exist are:

    - the *left window* ``L(t) = [t - d, t]`` of each time ``t`` of a record in ``A``, and
    - the *right window* ``R(t) = [t + 1, t + 1 + d]`` of each such ``t`` for which ``A`` has a record
      with time in ``[t + 1, t + 1 + d]`` (so it is never empty);

    one window per distinct bounds (``L(t)`` and ``R(t - d - 1)`` coincide). Reported half-open, i.e.
    ``start_ms = lo`` and ``end_ms = hi + 1`` for inclusive ``[lo, hi]``; starts are not clipped at 0.
    A window's value aggregates the records of the key with time inside it.

    With a watermark (precisely, processing records one at a time in order, ``wm_i`` the watermark
    after record ``i``): record ``i`` is late iff ``t_i + d + 1 + grace_ms <= wm_i`` (the last window
    that could contain it, ``[t_i, t_i + d]``, is closed). A window ``W`` only receives record ``j``
    if ``W`` is open at ``j`` (``W.end_ms + grace_ms > wm_j``); ``L(t)`` exists iff some accepted record
    at ``t`` arrived while ``L(t)`` was open; ``R(t)`` exists iff there are accepted records ``i`` at
    ``t`` and ``j`` in ``[t + 1, t + 1 + d]`` with ``R(t)`` open at ``max(i, j)``. An accepted record can
    thus still belong to no window yet (its own left window closed) and join later records' windows.
    The aggregation must support `merge`. Cost: a record updates every open window containing it, so
    it grows with the key's distinct event times within ``d`` of it (as in Kafka Streams).
    """

    size_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        _check("size_ms", self.size_ms, 1)
        _check("grace_ms", self.grace_ms, 0)


@dataclass(frozen=True, slots=True)
class Session:
    """Per-key activity sessions: records whose times differ by less than ``gap_ms`` share a session.

    Each record at ``t`` spans ``[t, t + gap_ms)``; overlapping spans merge, so a session over records
    with times ``first..last`` is ``[first, last + gap_ms)`` and closes at ``last + gap_ms + grace_ms <=
    wm``. A record is late iff its own span is closed (``t + gap_ms + grace_ms <= wm``) or it overlaps
    a session that is already closed: closed sessions are never changed, so the final sessions are
    exactly the gap-sessions of the accepted records. (Closed sessions' bounds are kept until
    ``end + gap_ms + grace_ms <= wm`` to decide that.) The aggregation must support `merge`.
    """

    gap_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        _check("gap_ms", self.gap_ms, 1)
        _check("grace_ms", self.grace_ms, 0)


WindowSpec = Tumbling | Hopping | Sliding | Session
