"""A Debezium CDC sink (bronze + silver) configured by environment variables, for child processes."""

from __future__ import annotations

import os

from streamsvc.serde.debezium import DebeziumSerde
from streamsvc.sinks.iceberg import IcebergSinkSpec

sink = IcebergSinkSpec(
    name="customers",
    source="customers",
    table="cdc.customers_bronze",
    value_serde=DebeziumSerde(),
    cdc=True,
    silver_table="cdc.customers",
    key_columns=("id",),
    commit_interval_s=float(os.environ.get("TEST_SINK_INTERVAL_S", "0.3")),
    merge_interval_s=float(os.environ.get("TEST_SINK_MERGE_INTERVAL_S", "3600")),
)
