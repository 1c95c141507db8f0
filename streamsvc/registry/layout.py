"""Which subject each schema file under `schemas/` is registered under (BRIEF §3.3 subject strategies).

A file's subject comes from, in order: the command line (`--strategy`, `--topic`, `--key`), its entry in
`<schemas dir>/subjects.toml`, that file's `[defaults]`, else RecordNameStrategy (the record's full name,
which needs no topic). Example `schemas/subjects.toml`:

    [defaults]
    strategy = "record"

    [files."demo/customers_envelope.avsc"]
    strategy = "topic"                       # TopicNameStrategy: <topic>-value
    topic = "dbserver1.inventory.customers"

    [files."demo/order_key.avsc"]
    strategy = "topic_record"                # TopicRecordNameStrategy: <topic>-<record full name>
    topic = "orders"
    key = true
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamsvc.errors import ConfigError
from streamsvc.registry.avsc import SchemaVersion, parse_avro
from streamsvc.registry.client import (
    SubjectNameStrategy,
    record_name_strategy,
    topic_name_strategy,
    topic_record_name_strategy,
)

MANIFEST = "subjects.toml"
STRATEGIES: dict[str, SubjectNameStrategy] = {
    "topic": topic_name_strategy,
    "record": record_name_strategy,
    "topic_record": topic_record_name_strategy,
}


@dataclass(frozen=True)
class SubjectRule:
    """How a schema file maps to a subject; fields left None are decided by the next source in line."""

    strategy: str | None = None
    topic: str | None = None
    key: bool | None = None

    def over(self, fallback: SubjectRule) -> SubjectRule:
        """This rule, gaps filled from `fallback`; a topic without a strategy means TopicNameStrategy."""
        strategy = self.strategy or ("topic" if self.topic else None)
        return SubjectRule(
            strategy if strategy is not None else fallback.strategy,
            self.topic if self.topic is not None else fallback.topic,
            self.key if self.key is not None else fallback.key,
        )

    def subject(self, schema: SchemaVersion) -> str:
        strategy = self.strategy or ("topic" if self.topic else "record")
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown subject strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        if strategy != "record" and not self.topic:
            raise ConfigError(f"{schema.label}: strategy {strategy} needs a topic (--topic or {MANIFEST})")
        try:
            return STRATEGIES[strategy](self.topic or "", bool(self.key), schema.name)
        except ConfigError as exc:
            raise ConfigError(f"{schema.label}: {exc}") from exc


@dataclass(frozen=True)
class SchemaFile:
    """A schema file, parsed, with the subject it belongs to."""

    path: Path
    schema: SchemaVersion
    subject: str


def schema_files(root: Path, paths: Sequence[Path], cli: SubjectRule) -> list[SchemaFile]:
    """The given `paths` (every `*.avsc` under `root` when none), sorted, each with its subject."""
    if not paths and not root.is_dir():
        raise ConfigError(f"schema directory {root} does not exist (give files, or --dir)")
    files = sorted(p for p in (paths or root.rglob("*.avsc")))
    if not files:
        raise ConfigError(f"no *.avsc files under {root}")
    defaults, per_file = _manifest(root)
    out = []
    for path in files:
        if not path.is_file():
            raise ConfigError(f"schema file {path} does not exist")
        schema = parse_avro(path.read_text(), _display(path))
        rule = cli.over(per_file.get(_relative(path, root), SubjectRule())).over(defaults)
        out.append(SchemaFile(path, schema, rule.subject(schema)))
    return out


def _manifest(root: Path) -> tuple[SubjectRule, dict[str, SubjectRule]]:
    manifest = root / MANIFEST
    if not manifest.is_file():
        return SubjectRule(), {}
    try:
        data = tomllib.loads(manifest.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{manifest}: {exc}") from exc
    defaults = _rule(data.get("defaults", {}), f"{manifest} [defaults]")
    entries = data.get("files", {}).items()
    files = {name: _rule(entry, f"{manifest} [files.{name!r}]") for name, entry in entries}
    return defaults, files


def _rule(entry: Any, where: str) -> SubjectRule:
    if not isinstance(entry, dict) or set(entry) - {"strategy", "topic", "key"}:
        raise ConfigError(f"{where}: expected keys strategy, topic, key; got {entry!r}")
    rule = SubjectRule(entry.get("strategy"), entry.get("topic"), entry.get("key"))
    if rule.strategy is not None and rule.strategy not in STRATEGIES:
        raise ConfigError(f"{where}: unknown strategy {rule.strategy!r}; use one of {', '.join(STRATEGIES)}")
    return rule


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)
