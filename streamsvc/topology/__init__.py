"""Topology definition: what a pipeline computes, independent of how it runs."""

from streamsvc.topology.model import Source, Stream, Topology, kafka_timestamp

__all__ = ["Source", "Stream", "Topology", "kafka_timestamp"]
