"""A deterministic Nexmark bid generator (the bid stream of the Nexmark benchmark, simplified); the
benchmark (`bench/q5.py`) and `streamsvc generate nexmark` use it.

Bids arrive in event-time order with a bounded out-of-orderness; auctions are drawn with a hot-set skew
so that some keys are much busier than others, as in Nexmark's generator. Same seed, same bids.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bid:
    auction: int
    bidder: int
    price: int  # cents
    date_time: int  # event time, epoch ms

    def to_json_dict(self) -> dict[str, int]:
        return {
            "auction": self.auction,
            "bidder": self.bidder,
            "price": self.price,
            "date_time": self.date_time,
        }


def bids(
    n: int,
    seed: int = 42,
    events_per_second: int = 10_000,
    auctions: int = 1_000,
    hot_share: float = 0.5,
    max_delay_ms: int = 500,
    start_ms: int | None = None,
) -> Iterator[Bid]:
    """`n` bids; event time advances by 1/events_per_second, each bid delayed by up to `max_delay_ms`.

    `start_ms` defaults to an hour ago, rounded to the minute: results are stamped with event time, and
    the broker's time-based retention deletes records stamped long ago.
    """
    rng = random.Random(seed)
    if start_ms is None:
        start_ms = (int(time.time() * 1000) - 3_600_000) // 60_000 * 60_000
    hot = max(1, auctions // 100)
    step = 1000.0 / events_per_second
    for i in range(n):
        auction = rng.randrange(hot) if rng.random() < hot_share else rng.randrange(auctions)
        t = start_ms + int(i * step) - rng.randrange(max_delay_ms + 1)
        yield Bid(auction, rng.randrange(100_000), rng.randrange(100, 1_000_000), t)
