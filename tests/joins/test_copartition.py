"""Start-up co-partitioning check."""

from __future__ import annotations

import pytest

from streamsvc.errors import TopologyError
from streamsvc.joins import check_copartitioned


def test_equal_counts_pass() -> None:
    check_copartitioned({"orders": 6, "customers": 6, "payments": 6})
    check_copartitioned({"orders": 3})
    check_copartitioned({})


def test_mismatch_names_every_topic_and_count() -> None:
    with pytest.raises(TopologyError) as info:
        check_copartitioned({"orders": 6, "customers": 4, "payments": 6, "refunds": 1})
    message = str(info.value)
    assert message.startswith(
        "join inputs are not co-partitioned: orders, payments with 6 partitions; "
        "customers with 4 partitions; refunds with 1 partition."
    )
    assert "global table" in message
