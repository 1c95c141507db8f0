"""streamsvc: Kafka-native exactly-once stream processing for the Kappa architecture."""

from streamsvc.config import Settings, load_settings
from streamsvc.topology import Stream, Topology

__all__ = ["Settings", "Stream", "Topology", "load_settings"]
__version__ = "0.1.0"
