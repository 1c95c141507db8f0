"""Sinks that leave Kafka: Iceberg tables with exactly-once snapshot commits."""
