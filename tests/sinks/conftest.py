"""Catalog fixtures: SQLite in tmp_path always; PostgreSQL via `.ci/postgres.sh`; REST + S3 from a lake
(`streamsvc.dev.lake`: versitygw + Iceberg's REST fixture) started for the session on free ports."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest
from pyiceberg.catalog import Catalog

from streamsvc.dev import lake
from streamsvc.errors import ConfigError
from streamsvc.sinks.iceberg.catalog import CatalogConfig, load_catalog_config, make_catalog
from tests.sinks.support import give_up
from tests.support import ROOT

SCRIPT = ROOT / ".ci" / "postgres.sh"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of a throwaway PostgreSQL (skips when no driver or server is available)."""
    fail = give_up()
    if find_spec("psycopg2") is None:
        fail("psycopg2 is not installed (pyiceberg[sql-postgres])")
    # A free port of our own, so that another PostgreSQL (or another test run) cannot collide with it.
    env = {**os.environ, "STREAMSVC_PG_PORT": str(free_port())}
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env)
    started = run(["bash", str(SCRIPT), "start"], timeout=600)
    if started.returncode != 0:
        fail(f"cannot start PostgreSQL: {started.stderr[-2000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        run(["bash", str(SCRIPT), "stop"], timeout=120)


@pytest.fixture(scope="session")
def rest_lake() -> Iterator[lake.LocalLake]:
    """A local S3 + Iceberg REST catalog of this test session (own ports and data, removed afterwards)."""
    local = lake.LocalLake.ephemeral()
    try:
        lake.start(local)
    except ConfigError as exc:
        lake.stop(local)
        give_up()(f"cannot start the local lake: {exc}")
    try:
        yield local
    finally:
        lake.stop(local)
        shutil.rmtree(local.run_dir, ignore_errors=True)


def rest_config(local: lake.LocalLake) -> CatalogConfig:
    """The sink's catalog configuration for `local`, read the way a sink process reads it."""
    return load_catalog_config(env=local.client_env())


def empty_catalog(catalog: Catalog) -> None:
    """Drop (and purge) every table and namespace: REST tests share the session's one catalog."""
    for ns in catalog.list_namespaces():
        for ident in catalog.list_tables(ns):
            with contextlib.suppress(Exception):
                catalog.purge_table(ident)
        with contextlib.suppress(Exception):
            catalog.drop_namespace(ns)


@pytest.fixture(params=["sqlite", "postgres", "rest"])
def catalog_setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CatalogConfig, Catalog]]:
    """(config, catalog) on SQLite, on PostgreSQL under a catalog name unique to the test, or on the
    session's REST catalog + S3 (emptied after the test)."""
    warehouse = (tmp_path / "warehouse").as_uri()
    if request.param == "rest":
        config = rest_config(request.getfixturevalue("rest_lake"))
        catalog = make_catalog(config)
        empty_catalog(catalog)
        yield config, catalog
        empty_catalog(catalog)
        return
    if request.param == "sqlite":
        config = CatalogConfig(uri=f"sqlite:///{tmp_path / 'catalog.db'}", warehouse=warehouse)
    else:
        url = request.getfixturevalue("postgres_url")
        config = CatalogConfig(name=f"c{uuid.uuid4().hex[:12]}", uri=url, warehouse=warehouse)
    yield config, make_catalog(config)
