"""Stream-table join: enrich each stream record with the table's current row for its key.

Like Kafka Streams' KStream-KTable join, the join is by processing time of arrival: a stream record
sees the table exactly as the updates applied before it left it, and later table updates never
re-emit earlier stream records. The runtime applies table updates and stream records in offset-time
order (for a co-partitioned `CdcTable`, the table partition and the stream partition with the same
number), so results depend on that interleaving; they are reproduced by a replay that interleaves the
same way. The join itself holds no state: the table does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from streamsvc.joins._common import JoinType, Row, check_how
from streamsvc.joins.table import Table

__all__ = ["StreamTableJoin"]

V = TypeVar("V")
Out = TypeVar("Out")


class StreamTableJoin(Generic[V, Out]):
    """Join stream records to `table` on the record key.

    ``inner``: records whose key has no row (or is None) produce nothing; ``left``: they produce
    ``combine(value, None)``. With a `GlobalTable` the stream partition is irrelevant to lookups.
    """

    def __init__(self, table: Table, how: JoinType, combine: Callable[[V, Row | None], Out]) -> None:
        self.table = table
        self.how: JoinType = check_how(how)
        self.combine = combine

    @property
    def requires_copartitioning(self) -> bool:
        """Whether the stream topic must have as many partitions as the table topic."""
        return self.table.partitioned

    def process(
        self, partition: int, keys: Sequence[bytes | None], values: Sequence[V]
    ) -> list[tuple[int, Out]]:
        """Join one partition's batch (records in offset order) against the table's current state.

        Returns ``(row index in the batch, combined value)`` in row order.
        """
        if len(keys) != len(values):
            raise ValueError(f"keys and values differ in length: {len(keys)} != {len(values)}")
        get, combine, left = self.table.get, self.combine, self.how == "left"
        out: list[tuple[int, Out]] = []
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            row = None if key is None else get(partition, key)
            if row is not None or left:
                out.append((i, combine(value, row)))
        return out
