"""Exception hierarchy shared by every layer.

The DLQ records the failing exception's qualified class name, so these classes are part of the
on-the-wire contract (`dlq.error.class`): rename them only with a migration note.
"""

from __future__ import annotations


class StreamsvcError(Exception):
    """Base class of every error streamsvc raises on purpose."""


class ConfigError(StreamsvcError):
    """The configuration is incomplete or contradictory; the message says what to change."""


class TopologyError(StreamsvcError):
    """A topology description is invalid (unknown topic, sink without serde, ...)."""


class DecodeError(StreamsvcError):
    """A record's key or value bytes could not be turned into a Python object (DLQ stage `decode`)."""


class WireFormatError(DecodeError):
    """The bytes do not follow the expected framing (e.g. Confluent magic byte 0x00 + 4-byte id)."""


class UnknownSchemaError(DecodeError):
    """The schema id in the record is not known to the schema registry."""


class SchemaResolutionError(DecodeError):
    """The writer schema cannot be resolved to the reader schema (incompatible evolution)."""


class MalformedPayloadError(DecodeError):
    """The payload is truncated or not valid for its format (invalid JSON, short Avro datum, ...)."""


class EncodeError(StreamsvcError):
    """An output object could not be serialized for its sink (DLQ stage `process`)."""


class ExpectationFailed(StreamsvcError):
    """A decoded record violates a declared expectation (DLQ stage `validate`)."""


class LateRecordError(StreamsvcError):
    """A record arrived after every window it belongs to had closed (DLQ stage `late`)."""


class FatalRuntimeError(StreamsvcError):
    """The agent cannot continue safely (fenced producer, invalid epoch): the process must exit non-zero."""


class RecordFoldError(StreamsvcError):
    """A stateful engine failed on one record of a batch (`index`, in the rows it was given). Its
    in-memory state is undefined afterwards: the runtime aborts, restores it and dead-letters the
    record on the re-run."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.index = index
        self.cause = cause
