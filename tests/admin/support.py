"""Helpers for the operator-CLI tests: Kafka's own ConsumerGroupCommand from the broker's jars, the
streamsvc CLI in-process, and consumer-group plumbing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from unittest import mock

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from streamsvc.admin.replay import committed_offsets
from streamsvc.cli.main import main
from streamsvc.dev import kafka

TP = tuple[str, int]
_LOG4J = """status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%p] %m%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
"""


def kafka_consumer_groups(
    bootstrap: str, tmp: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`kafka-consumer-groups.sh --bootstrap-server B ARGS` from the local broker's own jars."""
    java = str(Path(os.environ["JAVA_HOME"]) / "bin" / "java") if "JAVA_HOME" in os.environ else "java"
    if shutil.which(java) is None:
        pytest.fail("java is needed to run Kafka's ConsumerGroupCommand (it also runs the test broker)")
    log4j = tmp / "tool-log4j2.properties"
    log4j.write_text(_LOG4J)
    cmd = [
        java,
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        kafka.classpath(kafka.LocalKafka.from_env()),
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        "--bootstrap-server",
        bootstrap,
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def streamsvc_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `streamsvc ARGS` in this process: (exit code, stdout, stderr). Logging keeps the session's
    set-up: configured here it would print into this test's capture buffer, closed after the test, and
    agents logging in later tests would fail."""
    capsys.readouterr()
    try:
        with mock.patch("streamsvc.cli.main.configure_logging"):
            code = main(["--log-level", "WARNING", *args])
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def commit(admin: AdminClient, group: str, offsets: Mapping[TP, int]) -> None:
    tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])[group].result(30)


def committed(admin: AdminClient, group: str) -> dict[TP, int]:
    return committed_offsets(admin, group)
