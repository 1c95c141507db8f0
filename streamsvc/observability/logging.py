"""structlog JSON logging, one event per line on stderr."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Set up structlog once per process. `json=False` gives a console renderer for humans."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=True,
    )


class _CurrentStderr:
    """`sys.stderr` as it is at each write (tests and embedders swap it; a captured stream closes)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _StderrLoggerFactory(structlog.PrintLoggerFactory):
    def __init__(self) -> None:
        super().__init__(file=_CurrentStderr())  # type: ignore[arg-type]


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger().bind(**bind)


class _StructlogHandler(logging.Handler):
    """Re-emits librdkafka's log lines (which confluent-kafka hands to a `logging.Logger` as
    `"%s [%s] %s" % (facility, client name, message)`) as structlog JSON events."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__(logging.DEBUG)
        self.fields = fields

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 3 and record.msg == "%s [%s] %s":
            facility, client, message = (str(a) for a in args)
        else:
            facility, client, message = "", "", record.getMessage()
        log = structlog.get_logger().bind(**self.fields)
        method = {logging.DEBUG: log.debug, logging.INFO: log.info, logging.WARNING: log.warning}.get(
            record.levelno, log.error
        )
        method("librdkafka", facility=facility, client=client, message=message)


_kafka_loggers: dict[tuple[tuple[str, Any], ...], logging.Logger] = {}


def kafka_logger(**fields: Any) -> logging.Logger:
    """A stdlib logger that routes a Kafka client's log lines through structlog with `fields` bound."""
    key = tuple(sorted(fields.items()))
    logger = _kafka_loggers.get(key)
    if logger is None:
        name = "streamsvc.librdkafka." + ".".join(f"{k}={v}" for k, v in key)
        logger = logging.getLogger(name)
        logger.handlers[:] = [_StructlogHandler(dict(fields))]
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        _kafka_loggers[key] = logger
    return logger


def kafka_logging(**fields: Any) -> dict[str, Any]:
    """Client config that sends librdkafka's own log lines (`%3|...|FAIL|...` on stderr by default)
    through structlog: add `**kafka_logging(app=..., agent=...)` to a Consumer/Producer/AdminClient config."""
    return {"logger": kafka_logger(**fields)}
