"""Start-up check that joined topics are co-partitioned."""

from __future__ import annotations

from collections.abc import Mapping

from streamsvc.errors import TopologyError

__all__ = ["check_copartitioned"]


def check_copartitioned(counts: Mapping[str, int]) -> None:
    """Raise `TopologyError` unless every topic in `counts` (topic -> partition count) has the same
    number of partitions, as a co-partitioned join needs (same key -> same partition number)."""
    if len(set(counts.values())) <= 1:
        return
    by_count: dict[int, list[str]] = {}
    for topic, n in counts.items():
        by_count.setdefault(n, []).append(topic)
    listing = "; ".join(
        f"{', '.join(sorted(topics))} with {n} partition{'s' if n != 1 else ''}"
        for n, topics in sorted(by_count.items(), key=lambda item: (-len(item[1]), -item[0]))
    )
    raise TopologyError(
        f"join inputs are not co-partitioned: {listing}. Joined topics need the same partition count "
        "(and the same key partitioner); repartition one of them or join against a global table"
    )
