"""Catalog fixtures: SQLite in tmp_path always; PostgreSQL via `.ci/postgres.sh` when it can start."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest
from pyiceberg.catalog import Catalog

from streamsvc.sinks.iceberg.catalog import CatalogConfig, make_catalog
from tests.support import ROOT

SCRIPT = ROOT / ".ci" / "postgres.sh"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of a throwaway PostgreSQL (skips when no driver or server is available)."""
    # In CI the PostgreSQL catalog is part of the contract: fail loudly instead of skipping.
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if find_spec("psycopg2") is None:
        give_up("psycopg2 is not installed (pyiceberg[sql-postgres])")
    # A free port of our own, so that another PostgreSQL (or another test run) cannot collide with it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        env = {**os.environ, "STREAMSVC_PG_PORT": str(probe.getsockname()[1])}
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env)
    started = run(["bash", str(SCRIPT), "start"], timeout=600)
    if started.returncode != 0:
        give_up(f"cannot start PostgreSQL: {started.stderr[-2000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        run(["bash", str(SCRIPT), "stop"], timeout=120)


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_setup(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[CatalogConfig, Catalog]:
    """(config, catalog) on SQLite, or on PostgreSQL under a catalog name unique to the test."""
    warehouse = (tmp_path / "warehouse").as_uri()
    if request.param == "sqlite":
        config = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}", warehouse=warehouse)
    else:
        url = request.getfixturevalue("postgres_url")
        config = CatalogConfig(name=f"c{uuid.uuid4().hex[:12]}", uri=url, warehouse=warehouse)
    return config, make_catalog(config)
