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
`$STREAMSVC_HOME/iceberg/warehouse` (`STREAMSVC_HOME` defaults to `~/.cache/streamsvc`).
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
    return CatalogConfig(**values, properties=props).resolved(streamsvc_home(env))


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
