"""The event-time window operator the runtime drives once per consumed batch and partition.

Time. Each partition has its own watermark ``wm``: ``max(event time seen) - allowed_lateness_ms``,
raised record by record as the batch is folded in offset order (and by `advance`). Every closing and
lateness decision uses the *partition's* watermark, like Kafka Streams' per-task stream time: keys are
co-partitioned, so a key's results and late records depend only on its own partition's records in
offset order -- never on how partitions interleave, on batch boundaries, or on which worker runs
them. Results and the late set are therefore reproduced exactly by a replay, and a batch gives the
same output as folding its records one at a time. (The agent-wide watermark of `WatermarkTracker` is
for metrics and idle handling, not for closing windows.)

Windows (see `streamsvc.windows.spec`): a window ``[start, end)`` is open while ``end + grace > wm``.
A record is late iff none of the windows it could belong to is open when it is processed; late records
change nothing and are flagged in `WindowOutput.late` (route them to the DLQ with stage ``late``).
``final`` emission: each window once, in the batch whose watermark closes it. ``update``: after each
batch, every window that batch changed, with its current value; nothing on close.

Exactly-once. After each batch the runtime produces the results and late records, writes
`changes(partition)` to the partition's compacted changelog topic (key -> value, None = tombstone) and
commits offsets, all in one transaction. On assignment it replays that changelog into `restore`; on
revocation it calls `drop`. State includes the watermark, so a restored partition continues exactly
where the committed transaction left it. If `process` raises (a bad key type, a failing user function),
the partition's in-memory state is undefined: abort the transaction and restore the partition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt

from streamsvc.state.local import LocalState
from streamsvc.windows._base import Keys, PartitionEngine
from streamsvc.windows._fixed import FixedColumnar, FixedRecords
from streamsvc.windows._session import SessionRecords
from streamsvc.windows._sliding import SlidingRecords
from streamsvc.windows._stored import FixedStored
from streamsvc.windows.aggregations import Aggregation, ColumnarAggregation, Values
from streamsvc.windows.results import WindowOutput, WindowResult
from streamsvc.windows.spec import EMIT_MODES, Emit, Hopping, Session, Sliding, Tumbling, WindowSpec

__all__ = ["WindowOutput", "WindowResult", "WindowedAggregation"]


class WindowedAggregation:
    """Windowed aggregation over keyed records, with per-partition state.

    Tumbling and hopping windows with a built-in aggregation run on numpy (``vectorize=False`` forces
    the per-record engine, which gives identical results and changelog bytes); everything else folds
    one record at a time.
    """

    def __init__(
        self,
        window: WindowSpec,
        aggregation: Aggregation,
        emit: Emit = "final",
        *,
        allowed_lateness_ms: int = 0,
        vectorize: bool = True,
        store: Callable[[int], LocalState] | None = None,
    ) -> None:
        if emit not in EMIT_MODES:
            raise ValueError(f"emit must be one of {EMIT_MODES}, got {emit!r}")
        if (
            isinstance(allowed_lateness_ms, bool)
            or not isinstance(allowed_lateness_ms, int)
            or allowed_lateness_ms < 0
        ):
            raise ValueError(f"allowed_lateness_ms must be an int >= 0, got {allowed_lateness_ms!r}")
        if isinstance(window, Session | Sliding) and not aggregation.mergeable:
            raise ValueError(f"{type(window).__name__} windows need an aggregation with merge")
        self.window, self.aggregation, self.emit = window, aggregation, emit
        self.allowed_lateness_ms = allowed_lateness_ms
        self.vectorize = vectorize
        self.store = store
        self._parts: dict[int, PartitionEngine] = {}

    @property
    def resident(self) -> bool:
        """Whether the state lives in the `store` (tumbling and hopping windows) instead of memory."""
        return self.store is not None and isinstance(self.window, Tumbling | Hopping)

    def _new(self, partition: int) -> PartitionEngine:
        w, agg, emit, lateness = self.window, self.aggregation, self.emit, self.allowed_lateness_ms
        if isinstance(w, Tumbling):
            w = w.as_hopping()
        if isinstance(w, Hopping) and self.store is not None:
            return FixedStored(w, agg, emit, lateness, self.store(partition))
        if isinstance(w, Hopping):
            if self.vectorize and isinstance(agg, ColumnarAggregation):
                return FixedColumnar(w, agg, emit, lateness)
            return FixedRecords(w, agg, emit, lateness)
        if isinstance(w, Sliding):
            return SlidingRecords(w, agg, emit, lateness)
        return SessionRecords(w, agg, emit, lateness)

    def _part(self, partition: int) -> PartitionEngine:
        engine = self._parts.get(partition)
        if engine is None:
            engine = self._parts[partition] = self._new(partition)
        return engine

    @property
    def partitions(self) -> frozenset[int]:
        """Partitions with state (processed or restored, not dropped)."""
        return frozenset(self._parts)

    def process(
        self, partition: int, keys: Keys, event_times: npt.ArrayLike, values: Values = None
    ) -> WindowOutput:
        """Fold one partition's batch, records in offset order.

        `keys` (bytes, str, int or None each; a numpy array of ints/bytes/str is fastest), `event_times`
        (ms, int64) and `values` (one per record; None for `Count`) are parallel columns. Returns the
        results to emit and the late mask over the rows.
        """
        times = np.asarray(event_times, dtype=np.int64).reshape(-1)
        engine = self._part(partition)
        results, late = engine.process(keys, times, values)
        return WindowOutput(results, late, engine.watermark)

    def advance(self, partition: int, watermark_ms: int) -> list[WindowResult]:
        """Raise a partition's watermark without records (e.g. a wall-clock fallback for a quiet
        partition) and return the windows that closes (final mode). It is stored in the changelog
        like any watermark, but a replay from scratch without the same call may close windows later."""
        return self._part(partition).advance(int(watermark_ms))

    def watermark(self, partition: int) -> int | None:
        """The partition's watermark; None before its first record."""
        engine = self._parts.get(partition)
        return None if engine is None else engine.watermark

    def changes(self, partition: int) -> dict[bytes, bytes | None]:
        """Changelog entries changed since the last call (None: delete), for the transaction that
        commits the batches they came from."""
        engine = self._parts.get(partition)
        return {} if engine is None else engine.changes()

    def restore(self, partition: int, entries: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Replace a partition's state with the one a changelog describes (entries in log order; the
        last per key wins, None deletes). Afterwards `changes` is empty until the next batch."""
        live: dict[bytes, bytes | None] = {}
        for key, value in entries:
            live[key] = value
        engine = self._parts[partition] = self._new(partition)
        engine.restore({k: v for k, v in live.items() if v is not None})

    def restore_local(self, partition: int) -> None:
        """A `resident` engine: take the partition's state as its store holds it (committed)."""
        self._parts[partition] = self._new(partition)

    def drop(self, partition: int) -> None:
        """Forget a revoked partition's state (its changelog keeps it)."""
        self._parts.pop(partition, None)
