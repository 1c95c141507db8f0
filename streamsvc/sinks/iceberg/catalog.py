"""Catalog factory: SQL catalog on SQLite (embedded default), SQL on PostgreSQL, or REST.

Configuration comes from the `[iceberg]` table of the streamsvc TOML file, overlaid by environment
variables (later wins):

    [iceberg]
    catalog = "sql"                       # sql | rest            STREAMSVC_ICEBERG_CATALOG
    name = "streamsvc"                    # catalog name          STREAMSVC_ICEBERG_NAME
    uri = "postgresql+psycopg2://u:p@h/db" # SQLAlchemy URL / REST  STREAMSVC_ICEBERG_URI
    warehouse = "s3://bucket/wh"          # warehouse location    STREAMSVC_ICEBERG_WAREHOUSE
    [iceberg.properties]                  # passed to pyiceberg (credentials, s3.endpoint, ...)

Without a `uri` the SQL catalog is SQLite at `$STREAMSVC_HOME/iceberg/catalog.db` with the warehouse at
`$STREAMSVC_HOME/iceberg/warehouse` (`STREAMSVC_HOME` defaults to `~/.cache/streamsvc`). A `postgresql+...`
uri selects the SQL catalog on PostgreSQL.

Credentials come from the environment, never from the file: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN` and `AWS_REGION` become the `s3.*` FileIO properties, `STREAMSVC_ICEBERG_S3_ENDPOINT`
is `s3.endpoint` (an S3-compatible store), and a REST catalog's `STREAMSVC_ICEBERG_TOKEN` (bearer token) or
`STREAMSVC_ICEBERG_CREDENTIAL` (OAuth2 `client_id:client_secret`) become `token` / `credential`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyiceberg.catalog import Catalog, load_catalog

from streamsvc.errors import ConfigError

CATALOG_TYPES = ("sql", "rest")


def streamsvc_home(env: dict[str, str] | None = None) -> Path:
    """`$STREAMSVC_HOME`, else `~/.cache/streamsvc` (the same default as the local Kafka)."""
    env = dict(os.environ) if env is None else env
    return Path(env.get("STREAMSVC_HOME") or Path.home() / ".cache" / "streamsvc")


@dataclass(frozen=True)
class CatalogConfig:
    """Where Iceberg tables live; see the module docstring for the TOML/env names."""

    catalog: str = "sql"
    name: str = "streamsvc"
    uri: str = ""
    warehouse: str = ""
    properties: dict[str, str] = field(default_factory=dict)

    def resolved(self, home: Path) -> CatalogConfig:
        """Fill in the embedded defaults (SQLite + local warehouse under `home/iceberg`)."""
        if self.catalog not in CATALOG_TYPES:
            raise ConfigError(f"[iceberg].catalog must be one of {CATALOG_TYPES}, got {self.catalog!r}")
        if self.catalog == "rest":
            if not self.uri:
                raise ConfigError("the REST catalog needs [iceberg].uri (or STREAMSVC_ICEBERG_URI)")
            return self
        base = home / "iceberg"
        uri = self.uri or f"sqlite:///{base / 'catalog.db'}"
        warehouse = self.warehouse or (base / "warehouse").as_uri()
        return CatalogConfig(self.catalog, self.name, uri, warehouse, dict(self.properties))


_ENV = {
    "catalog": "STREAMSVC_ICEBERG_CATALOG",
    "name": "STREAMSVC_ICEBERG_NAME",
    "uri": "STREAMSVC_ICEBERG_URI",
    "warehouse": "STREAMSVC_ICEBERG_WAREHOUSE",
}
# Environment variables that become pyiceberg catalog/FileIO properties (credentials stay out of files).
PROPERTY_ENV = {
    "s3.endpoint": "STREAMSVC_ICEBERG_S3_ENDPOINT",
    "s3.access-key-id": "AWS_ACCESS_KEY_ID",
    "s3.secret-access-key": "AWS_SECRET_ACCESS_KEY",
    "s3.session-token": "AWS_SESSION_TOKEN",
    "s3.region": "AWS_REGION",
    "token": "STREAMSVC_ICEBERG_TOKEN",
    "credential": "STREAMSVC_ICEBERG_CREDENTIAL",
}


def load_catalog_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> CatalogConfig:
    """Read `[iceberg]` from the TOML file (`path` or `$STREAMSVC_CONFIG`) and `STREAMSVC_ICEBERG_*`."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    props: dict[str, str] = {}
    path = path or env.get("STREAMSVC_CONFIG")
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        with p.open("rb") as fh:
            try:
                section = tomllib.load(fh).get("iceberg", {})
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
        for key, raw in section.items():
            if key == "properties":
                props.update({str(k): str(v) for k, v in raw.items()})
            elif key in _ENV:
                values[key] = str(raw)
            else:
                raise ConfigError(
                    f"{p}: unknown setting [iceberg].{key}; known: {sorted([*_ENV, 'properties'])}"
                )
    for key, var in _ENV.items():
        if env.get(var):
            values[key] = env[var]
    for prop, var in PROPERTY_ENV.items():
        if env.get(var):
            props[prop] = env[var]
    return CatalogConfig(**values, properties=props).resolved(streamsvc_home(env))


def config_env(config: CatalogConfig) -> dict[str, str]:
    """The environment that makes `load_catalog_config` in another process return `config`."""
    env = {var: str(getattr(config, key)) for key, var in _ENV.items() if getattr(config, key)}
    unknown = sorted(set(config.properties) - set(PROPERTY_ENV))
    if unknown:
        raise ConfigError(f"catalog properties {unknown} have no environment variable; use a config file")
    return env | {PROPERTY_ENV[k]: v for k, v in config.properties.items()}


def make_catalog(config: CatalogConfig) -> Catalog:
    """Open the catalog (creating the SQLite file's directory and the local warehouse if needed)."""
    props: dict[str, str] = {"type": config.catalog, "uri": config.uri, **config.properties}
    if config.warehouse:
        props["warehouse"] = config.warehouse
    if config.catalog == "sql":
        if config.uri.startswith("sqlite:///"):
            Path(config.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if config.warehouse.startswith("file://"):
            Path(config.warehouse.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    try:
        return load_catalog(config.name, **props)
    except ModuleNotFoundError as exc:  # e.g. no PostgreSQL driver installed
        raise ConfigError(f"cannot open the {config.catalog} catalog at {config.uri}: {exc}") from exc


def ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """Create `namespace` unless it exists. Sinks starting together race to create theirs: the SQL
    catalog checks, then inserts, so the loser gets a unique-constraint error rather than
    NamespaceAlreadyExistsError; either way the namespace now exists, which is all that is asked."""
    try:
        catalog.create_namespace(namespace)
    except Exception:
        if not catalog.namespace_exists(namespace):
            raise
