"""`ensure_namespace`: creating a namespace that exists (as a racing sink finds it) is not an error."""

from __future__ import annotations

from pathlib import Path

from streamsvc.sinks.iceberg.catalog import ensure_namespace
from tests.sinks.support import sqlite_catalog


def test_ensure_namespace_twice(tmp_path: Path) -> None:
    _config, catalog = sqlite_catalog(tmp_path)
    ensure_namespace(catalog, "lake")
    ensure_namespace(catalog, "lake")
    assert catalog.namespace_exists("lake")
