"""Kafka -> Iceberg sink with exactly-once snapshot commits (BRIEF §3.7)."""

from streamsvc.sinks.iceberg.catalog import CatalogConfig, load_catalog_config, make_catalog
from streamsvc.sinks.iceberg.offsets import TableOffsets, read_offsets
from streamsvc.sinks.iceberg.spec import IcebergSinkSpec, PartitionField, load_specs

__all__ = [
    "CatalogConfig",
    "IcebergSinkSpec",
    "PartitionField",
    "TableOffsets",
    "load_catalog_config",
    "load_specs",
    "make_catalog",
    "read_offsets",
]
