"""Reading the sink's tables from Apache Spark 3.5: the jars (from Maven Central, by `mvn`, cached in
`$STREAMSVC_HOME/spark-jars/`) and the Spark catalog settings that point at the same catalog a sink uses.

The settings are the query recipe of docs/iceberg.md: a REST catalog becomes `type=rest` with `S3FileIO`
(endpoint, path-style access, credentials and region from the sink's FileIO properties); a SQL catalog
becomes Iceberg's `JdbcCatalog` on the same database (`jdbc:sqlite:` or `jdbc:postgresql:`), under the same
catalog name, since both implementations key their rows by it. pyspark itself is the optional extra
`streamsvc[spark]`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from streamsvc.dev import jvm
from streamsvc.dev.lake import ICEBERG_VERSION, iceberg_dependency
from streamsvc.errors import ConfigError
from streamsvc.sinks.iceberg.catalog import CatalogConfig

SPARK_SCALA = "3.5_2.12"
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamsvc.dev</groupId><artifactId>spark-iceberg</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    {runtime}
    {aws}
    <dependency><groupId>org.xerial</groupId><artifactId>sqlite-jdbc</artifactId>
      <version>3.50.3.0</version></dependency>
    <dependency><groupId>org.postgresql</groupId><artifactId>postgresql</artifactId>
      <version>42.7.7</version></dependency>
  </dependencies>
</project>
"""


def spark_jars(home: Path) -> list[Path]:
    """iceberg-spark-runtime, iceberg-aws-bundle and the JDBC drivers, resolved on first use."""
    libs = home / "spark-jars" / f"iceberg-{ICEBERG_VERSION}-spark-{SPARK_SCALA}"
    if not any(libs.glob("iceberg-spark-runtime-*.jar")):
        pom = _POM.format(
            runtime=iceberg_dependency(f"iceberg-spark-runtime-{SPARK_SCALA}"),
            aws=iceberg_dependency("iceberg-aws-bundle"),
        )
        jvm.maven_copy_dependencies(pom, libs.parent / "resolve", libs)
    return sorted(libs.glob("*.jar"))


def spark_catalog_conf(config: CatalogConfig, spark_name: str | None = None) -> dict[str, str]:
    """`spark.sql.catalog.<name>.*` settings for the catalog described by `config` (a sink's)."""
    name = spark_name or config.name
    prefix = f"spark.sql.catalog.{name}"
    conf = {prefix: "org.apache.iceberg.spark.SparkCatalog", f"{prefix}.warehouse": config.warehouse}
    props = config.properties
    if config.catalog == "rest":
        conf |= {f"{prefix}.type": "rest", f"{prefix}.uri": config.uri}
        if "token" in props:
            conf[f"{prefix}.token"] = props["token"]
        if "credential" in props:
            conf[f"{prefix}.credential"] = props["credential"]
    else:
        if name != config.name:
            raise ConfigError(f"a JDBC catalog must keep the sink's catalog name {config.name!r}")
        conf |= {f"{prefix}.type": "jdbc", **_jdbc(prefix, config.uri)}
    if config.warehouse.startswith("s3://") or "s3.endpoint" in props:
        conf[f"{prefix}.io-impl"] = "org.apache.iceberg.aws.s3.S3FileIO"
        conf[f"{prefix}.s3.path-style-access"] = "true"
        for ours, theirs in (
            ("s3.endpoint", "s3.endpoint"),
            ("s3.access-key-id", "s3.access-key-id"),
            ("s3.secret-access-key", "s3.secret-access-key"),
            ("s3.session-token", "s3.session-token"),
            ("s3.region", "client.region"),
        ):
            if ours in props:
                conf[f"{prefix}.{theirs}"] = props[ours]
    return conf


def _jdbc(prefix: str, uri: str) -> dict[str, str]:
    """The JDBC URL (and user/password) of a pyiceberg SQL catalog's SQLAlchemy URL."""
    if uri.startswith("sqlite:///"):
        return {f"{prefix}.uri": f"jdbc:sqlite:{uri.removeprefix('sqlite:///')}"}
    parts = urlsplit(uri)
    if not parts.scheme.startswith("postgresql"):
        raise ConfigError(f"no JDBC equivalent known for the SQL catalog {uri}")
    conf = {f"{prefix}.uri": f"jdbc:postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"}
    if parts.username:
        conf[f"{prefix}.jdbc.user"] = parts.username
    if parts.password:
        conf[f"{prefix}.jdbc.password"] = parts.password
    return conf
