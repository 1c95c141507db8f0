"""Serdes: bytes <-> Python objects for record keys and values."""

from streamsvc.serde.avro import AvroSerde
from streamsvc.serde.base import Serde, SerdeContext
from streamsvc.serde.debezium import ChangeRecord, DebeziumKeySerde, DebeziumSerde
from streamsvc.serde.json import JsonSerde
from streamsvc.serde.raw import BytesSerde, StringSerde

__all__ = [
    "AvroSerde",
    "BytesSerde",
    "ChangeRecord",
    "DebeziumKeySerde",
    "DebeziumSerde",
    "JsonSerde",
    "Serde",
    "SerdeContext",
    "StringSerde",
]
