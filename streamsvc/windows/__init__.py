"""Event-time windows: specs, aggregations, watermarks and the per-partition window operator."""

from streamsvc.windows.aggregations import Aggregate, Aggregation, Count, Max, Mean, Min, Reduce, Sum
from streamsvc.windows.operator import WindowedAggregation
from streamsvc.windows.results import WindowOutput, WindowResult
from streamsvc.windows.spec import Emit, Hopping, Session, Sliding, Tumbling, WindowSpec
from streamsvc.windows.watermark import WatermarkTracker

__all__ = [
    "Aggregate",
    "Aggregation",
    "Count",
    "Emit",
    "Hopping",
    "Max",
    "Mean",
    "Min",
    "Reduce",
    "Session",
    "Sliding",
    "Sum",
    "Tumbling",
    "WatermarkTracker",
    "WindowOutput",
    "WindowResult",
    "WindowSpec",
    "WindowedAggregation",
]
