"""The local lake (versitygw + Iceberg REST fixture), catalog configuration from the environment, and the
`maintain` command's errors."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson

from streamsvc.cli import iceberg as iceberg_cli
from streamsvc.dev.lake import LocalLake
from streamsvc.dev.spark import spark_catalog_conf
from streamsvc.sinks.iceberg.catalog import CatalogConfig, config_env, load_catalog_config

LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port` (from /proc/net/tcp and tcp6, hex)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == LISTEN:
                found.add(address)
    return found


def is_loopback(hex_address: str) -> bool:
    if len(hex_address) == 8:  # IPv4, little-endian per 32-bit word
        return socket.inet_ntoa(bytes.fromhex(hex_address)[::-1]).startswith("127.")
    words = [bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, 32, 8)]
    v6 = socket.inet_ntop(socket.AF_INET6, b"".join(words))
    return v6 == "::1" or v6.startswith("::ffff:127.")


def test_lake_listens_on_loopback_only(rest_lake: LocalLake) -> None:
    for port in (rest_lake.s3_port, rest_lake.rest_port):
        addresses = listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert all(is_loopback(a) for a in addresses), (port, addresses)


def test_rest_and_s3_settings_come_from_the_environment() -> None:
    env = {
        "STREAMSVC_HOME": "/tmp/unused",
        **LocalLake(home=Path("/tmp/unused")).client_env(),
        "AWS_SESSION_TOKEN": "tok",
        "STREAMSVC_ICEBERG_CREDENTIAL": "client:secret",
    }
    config = load_catalog_config(env=env)
    assert (config.catalog, config.uri, config.warehouse) == (
        "rest",
        "http://127.0.0.1:8181",
        "s3://warehouse/",
    )
    assert config.properties == {
        "s3.endpoint": "http://127.0.0.1:7070",
        "s3.access-key-id": "streamsvc",
        "s3.secret-access-key": "streamsvc-dev-secret",
        "s3.session-token": "tok",
        "s3.region": "us-east-1",
        "credential": "client:secret",
    }
    assert load_catalog_config(env={"STREAMSVC_HOME": "/tmp/unused", **config_env(config)}) == config
    spark = spark_catalog_conf(config, "lake")
    assert spark["spark.sql.catalog.lake.type"] == "rest"
    assert spark["spark.sql.catalog.lake.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    assert spark["spark.sql.catalog.lake.client.region"] == "us-east-1"
    assert spark["spark.sql.catalog.lake.credential"] == "client:secret"


def test_spark_settings_for_sql_catalogs() -> None:
    sqlite = spark_catalog_conf(CatalogConfig(uri="sqlite:////data/c.db", warehouse="file:///data/wh"))
    assert sqlite["spark.sql.catalog.streamsvc.type"] == "jdbc"
    assert sqlite["spark.sql.catalog.streamsvc.uri"] == "jdbc:sqlite:/data/c.db"
    pg = CatalogConfig(name="c1", uri="postgresql+psycopg2://u:pw@127.0.0.1:5433/db", warehouse="s3://b/")
    conf = spark_catalog_conf(pg)
    assert conf["spark.sql.catalog.c1.uri"] == "jdbc:postgresql://127.0.0.1:5433/db"
    assert (conf["spark.sql.catalog.c1.jdbc.user"], conf["spark.sql.catalog.c1.jdbc.password"]) == ("u", "pw")
    assert conf["spark.sql.catalog.c1.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"


def test_maintain_on_a_missing_table_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STREAMSVC_ICEBERG_URI", f"sqlite:///{tmp_path / 'c.db'}")
    monkeypatch.setenv("STREAMSVC_ICEBERG_WAREHOUSE", (tmp_path / "wh").as_uri())
    code = iceberg_cli.main(["--log-level", "WARNING", "maintain", "--table", "lake.nowhere"])
    out = capsys.readouterr()
    assert code == iceberg_cli.EXIT_NO_TABLE == 3
    assert "table lake.nowhere does not exist in catalog streamsvc" in out.err
    assert "Traceback" not in out.err
    assert orjson.loads(out.out.strip())["error"].startswith("table lake.nowhere does not exist")
