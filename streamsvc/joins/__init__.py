"""Joins: tables from CDC topics, stream-table joins, stream-stream interval joins."""

from streamsvc.joins._common import JOIN_TYPES, JoinType, Row
from streamsvc.joins.copartition import check_copartitioned
from streamsvc.joins.interval import IntervalJoin, IntervalJoinOutput, JoinResult
from streamsvc.joins.stream_table import StreamTableJoin
from streamsvc.joins.table import CdcTable, GlobalTable, Table

__all__ = [
    "JOIN_TYPES",
    "CdcTable",
    "GlobalTable",
    "IntervalJoin",
    "IntervalJoinOutput",
    "JoinResult",
    "JoinType",
    "Row",
    "StreamTableJoin",
    "Table",
    "check_copartitioned",
]
