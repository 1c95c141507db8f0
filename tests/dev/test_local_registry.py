"""The local schema registry: Java discovery, loopback-only binding, and the running server's APIs."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from streamsvc.dev import jvm, registry
from streamsvc.errors import ConfigError


def fake_jdk(root: Path, name: str, version_line: str) -> Path:
    java = root / name / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return java


def test_find_java_takes_java_home_when_recent_enough_else_scans_installed_jdks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = fake_jdk(tmp_path / "home", "jdk17", 'openjdk version "17.0.15" 2025-04-15')
    jvms = tmp_path / "jvm"
    new = fake_jdk(jvms, "temurin-25", 'openjdk version "25.0.1" 2025-10-21 LTS')
    fake_jdk(jvms, "jdk8", 'java version "1.8.0_402"')
    monkeypatch.setenv("JAVA_HOME", str(old.parent.parent))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(jvm, "JVM_DIRS", (jvms,))
    assert jvm.find_java(17, "Kafka") == (str(old), 17)
    assert jvm.find_java(21, "Apicurio") == (str(new), 25)
    assert jvm.java_major_version(str(jvms / "jdk8" / "bin" / "java")) == 8
    with pytest.raises(ConfigError, match=r"Java 26\+ is needed for X; found: .*jdk17/bin/java \(17\)"):
        jvm.find_java(26, "X")


def test_registry_binds_only_loopback_and_moves_the_management_port(tmp_path: Path) -> None:
    local = registry.LocalRegistry(home=tmp_path, port=18081)
    props = registry._system_properties(local, registry.APICURIO_VERSION)
    assert "-Dquarkus.http.host=127.0.0.1" in props
    assert "-Dquarkus.http.port=18081" in props
    assert "-Dquarkus.management.host=127.0.0.1" in props
    assert "-Dquarkus.management.port=18082" in props
    fallback = registry._system_properties(local, registry.APICURIO_FALLBACK_VERSION)
    assert "-Dquarkus.management.enabled=false" in fallback
    assert local.url == "http://127.0.0.1:18081/apis/ccompat/v7"


def test_the_registry_answers_the_confluent_api(registry_url: str) -> None:
    assert registry.registry_answers(registry_url)
    with urllib.request.urlopen(f"{registry_url}/schemas/types", timeout=10) as response:
        assert "AVRO" in json.loads(response.read())
    local = registry.LocalRegistry.from_env()
    if registry_url == local.url:  # the one the project started: its health is on the management port
        assert registry.status(local)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{local.port + 1}/health/ready", timeout=10
        ) as response:
            assert json.loads(response.read())["status"] == "UP"
