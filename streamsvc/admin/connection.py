"""How the admin commands reach Kafka: `--bootstrap-server` and `--command-config` like Kafka's tools.

`--command-config` is a Java properties file of client settings. librdkafka understands most of the
names Kafka's tools use (`security.protocol`, `sasl.mechanism`, `ssl.keystore.location`...); the JAAS
line of SASL PLAIN/SCRAM is translated into `sasl.username`/`sasl.password`, and Java-only settings
with no librdkafka equivalent are refused with the name of the one to use instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from streamsvc.errors import ConfigError
from streamsvc.runtime.topics import admin_client

T = TypeVar("T")
_JAAS_FIELD = re.compile(r'(username|password)\s*=\s*"((?:[^"\\]|\\.)*)"')
_JAVA_ONLY = {
    "ssl.truststore.location": "ssl.ca.location (a PEM file)",
    "ssl.truststore.password": "ssl.ca.location (a PEM file needs no password)",
    "ssl.truststore.type": "ssl.ca.location (PEM)",
    "ssl.keystore.type": "ssl.keystore.location (PKCS#12) or ssl.certificate.location + ssl.key.location",
    "sasl.login.callback.handler.class": "sasl.oauthbearer.* settings",
}
# Settings Kafka's Java clients accept that librdkafka has no use for: dropped silently.
_IGNORED = {"default.api.timeout.ms", "retries", "retry.backoff.ms", "sasl.jaas.config"}


def parse_properties(text: str) -> dict[str, str]:
    """Java `.properties` lines: `key=value` or `key: value`, `#`/`!` comments, `\\` continuations."""
    props: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        m = re.match(r"^((?:[^=:\s\\]|\\.)+)\s*[=:\s]\s*(.*)$", line)
        key, value = (m.group(1), m.group(2)) if m else (line, "")
        props[key.replace("\\", "")] = value
    if pending:
        key, _, value = pending.partition("=")
        props[key.strip()] = value.strip()
    return props


def librdkafka_config(props: Mapping[str, str]) -> dict[str, str]:
    """Kafka client properties as librdkafka settings (see the module docstring)."""
    out: dict[str, str] = {}
    for key, value in props.items():
        if key in _JAVA_ONLY:
            raise ConfigError(f"--command-config: {key} is a Java client setting; use {_JAVA_ONLY[key]}")
        if key == "sasl.jaas.config":
            found = dict(_JAAS_FIELD.findall(value))
            if "username" not in found:
                raise ConfigError('--command-config: sasl.jaas.config has no username="..." to translate')
            out["sasl.username"] = found["username"]
            out["sasl.password"] = found.get("password", "")
        if key not in _IGNORED:
            out[key] = value
    return out


@dataclass(frozen=True)
class Connection:
    """Bootstrap servers plus the client properties every admin, consumer and producer gets."""

    bootstrap: str
    properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, bootstrap: str, command_config: str | None) -> Connection:
        props: dict[str, str] = {}
        if command_config:
            path = Path(command_config)
            if not path.is_file():
                raise ConfigError(f"--command-config {path} does not exist")
            props = librdkafka_config(parse_properties(path.read_text()))
        props.pop("bootstrap.servers", None)
        return cls(bootstrap, props)

    def client_config(self, **extra: Any) -> dict[str, Any]:
        return {**self.properties, "bootstrap.servers": self.bootstrap, **extra}

    def admin(self) -> AdminClient:
        return _checked(lambda: admin_client(self.bootstrap, self.properties))

    def consumer(self, group: str, **extra: Any) -> Consumer:
        conf = self.client_config(**{"group.id": group, "enable.auto.commit": False, **extra})
        return _checked(lambda: Consumer(conf))

    def producer(self, **extra: Any) -> Producer:
        return _checked(lambda: Producer(self.client_config(**extra)))


def _checked(make: Callable[[], T]) -> T:
    """Build a client; a setting librdkafka rejects becomes a ConfigError naming it."""
    try:
        return make()
    except KafkaException as exc:
        raise ConfigError(f"invalid client configuration (--command-config): {exc.args[0]}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid client configuration (--command-config): {exc}") from exc
