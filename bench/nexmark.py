"""The Nexmark bid generator lives in `streamsvc.generate.nexmark` (also `streamsvc generate nexmark`)."""

from streamsvc.generate.nexmark import Bid, bids

__all__ = ["Bid", "bids"]
