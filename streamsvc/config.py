"""Settings: a TOML file overlaid by `STREAMSVC_*` environment variables.

Precedence (later wins): defaults < config file < environment. See README "Configuration".
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from streamsvc.errors import ConfigError

Guarantee = Literal["exactly_once", "at_least_once"]
GUARANTEES: tuple[Guarantee, ...] = ("exactly_once", "at_least_once")
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
BROKER_DEFAULT = -1


@dataclass(frozen=True)
class Replication:
    """Replication of the topics streamsvc creates; -1 leaves a value to the broker's defaults
    (`default.replication.factor`, `min.insync.replicas`), like Kafka Streams' `replication.factor`."""

    replication_factor: int = BROKER_DEFAULT
    min_insync_replicas: int = BROKER_DEFAULT

    def validate(self) -> Replication:
        for name, value in (
            ("replication_factor", self.replication_factor),
            ("min_insync_replicas", self.min_insync_replicas),
        ):
            if value != BROKER_DEFAULT and value < 1:
                raise ConfigError(
                    f"{name} must be {BROKER_DEFAULT} (broker default) or at least 1, got {value}"
                )
        if 0 < self.replication_factor < self.min_insync_replicas:
            raise ConfigError(
                f"min_insync_replicas={self.min_insync_replicas} exceeds replication_factor="
                f"{self.replication_factor}: no acks=all (transactional) write could ever succeed"
            )
        return self


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs besides the topology itself."""

    app_id: str = "streamsvc"
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    group_id: str = ""  # defaults to app_id
    registry_url: str = ""
    guarantee: Guarantee = "exactly_once"
    commit_interval_ms: int = 100
    batch_size: int = 1000
    poll_timeout_ms: int = 100
    instance_id: str = ""  # defaults to $POD_NAME or the host name
    transactional_id: str = ""  # defaults to <app_id>.<agent>.<instance_id>
    static_membership: bool = True
    metrics_port: int = 0  # 0 = no HTTP control plane
    metrics_host: str = "0.0.0.0"
    dlq_suffix: str = ".dlq"
    idle_timeout_ms: int = 0  # windows: a partition without records this long stops holding back (0: never)
    wall_clock_fallback: bool = False  # windows: idle partitions' watermark follows the wall clock
    max_task_idle_ms: int = 0  # co-partitioned inputs: wait this long for a caught-up empty one (-1: never)
    state_dir: str = ""  # disk-backed stores; defaults to $STREAMSVC_HOME/state or ~/.cache/streamsvc/state
    wait_for_sources_s: float = (
        0.0  # wait this long for missing source topics before failing (0: fail at once)
    )
    max_consecutive_aborts: int = 10  # this many aborts in a row without a commit: not ready (livelock)
    client_timeout_ms: int = 10_000  # one attempt of a blocking Kafka call (a timed-out commit is resumed)
    client_deadline_ms: int = 120_000  # all attempts of one call; past it the agent is stuck and exits
    replication_factor: int = BROKER_DEFAULT  # of created topics; -1: the broker's default.replication.factor
    min_insync_replicas: int = BROKER_DEFAULT  # of created topics; -1: the broker's min.insync.replicas
    topics: dict[str, str] = field(default_factory=dict)
    consumer: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)

    @property
    def effective_group_id(self) -> str:
        return self.group_id or self.app_id

    @property
    def effective_instance_id(self) -> str:
        """`instance_id`, else $POD_NAME (a StatefulSet ordinal), else `<host>-<pid>`: two processes on
        one host never share an id, but that last one changes on every restart."""
        return self.instance_id or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def stable_instance_id(self) -> bool:
        """Whether the instance id survives a restart (then a restarted instance fences its zombie)."""
        return bool(self.instance_id or os.environ.get("POD_NAME"))

    @property
    def effective_static_membership(self) -> bool:
        """Static membership only for stable ids: an id that changes on every restart would leave its
        old member holding partitions until the session times out."""
        return self.static_membership and self.stable_instance_id

    @property
    def effective_state_dir(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir)
        return Path(os.environ.get("STREAMSVC_HOME", Path.home() / ".cache" / "streamsvc")) / "state"

    @property
    def replication(self) -> Replication:
        """How `streamsvc.runtime.topics.ensure_topics` replicates the topics it creates."""
        return Replication(self.replication_factor, self.min_insync_replicas)

    def topic(self, logical: str) -> str:
        """The real topic name for a logical name used in a topology (identity when unmapped)."""
        return self.topics.get(logical, logical)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


_SCALAR_FIELDS = {f.name: f for f in fields(Settings) if f.name not in ("topics", "consumer", "producer")}
KNOWN_SECTIONS = ("streamsvc", "topics", "consumer", "producer", "iceberg")
_TOPIC_ENV = re.compile(r"^STREAMSVC_TOPIC_(?P<name>.+)$")


def _coerce(name: str, raw: Any) -> Any:
    kind = type(getattr(Settings(), name))
    problem = ConfigError(f"setting {name!r}: cannot read {raw!r} as {kind.__name__}")
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise problem
    if kind is int and (isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer())):
        raise problem
    try:
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise problem from exc


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read settings from an optional TOML file and the environment.

    The file has a `[streamsvc]` table with the scalar settings, and optional `[topics]` (logical name ->
    real topic), `[consumer]` and `[producer]` tables passed through to librdkafka.
    """
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    topics: dict[str, str] = {}
    consumer: dict[str, Any] = {}
    producer: dict[str, Any] = {}
    path = path or env.get("STREAMSVC_CONFIG")
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist (given by --config or STREAMSVC_CONFIG)")
        with p.open("rb") as fh:
            try:
                doc = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
        unknown = sorted(set(doc) - set(KNOWN_SECTIONS))
        if unknown:
            raise ConfigError(f"{p}: unknown section(s) {unknown}; known: {list(KNOWN_SECTIONS)}")
        for key, raw in doc.get("streamsvc", {}).items():
            if key not in _SCALAR_FIELDS:
                raise ConfigError(f"{p}: unknown setting [streamsvc].{key}; known: {sorted(_SCALAR_FIELDS)}")
            values[key] = _coerce(key, raw)
        topics.update({str(k): str(v) for k, v in doc.get("topics", {}).items()})
        consumer.update(doc.get("consumer", {}))
        producer.update(doc.get("producer", {}))
    for name in _SCALAR_FIELDS:
        raw_env = env.get(f"STREAMSVC_{name.upper()}")
        if raw_env is not None and raw_env != "":
            values[name] = _coerce(name, raw_env)
    for key, raw_env in env.items():
        m = _TOPIC_ENV.match(key)
        if m:
            topics[m.group("name").lower()] = raw_env
    settings = Settings(**values, topics=topics, consumer=consumer, producer=producer)
    if settings.guarantee not in GUARANTEES:
        raise ConfigError(f"guarantee must be one of {GUARANTEES}, got {settings.guarantee!r}")
    if settings.commit_interval_ms <= 0 or settings.batch_size <= 0:
        raise ConfigError("commit_interval_ms and batch_size must be positive")
    if settings.client_timeout_ms <= 0 or settings.client_deadline_ms < settings.client_timeout_ms:
        raise ConfigError("client_timeout_ms must be positive and client_deadline_ms at least as large")
    if settings.max_task_idle_ms < -1:
        raise ConfigError("max_task_idle_ms must be -1 (no time synchronisation) or >= 0")
    if settings.max_consecutive_aborts <= 0 or settings.wait_for_sources_s < 0:
        raise ConfigError("max_consecutive_aborts must be positive and wait_for_sources_s >= 0")
    settings.replication.validate()
    return settings
