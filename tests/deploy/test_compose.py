"""docker-compose.yml against the Compose specification (compose-go, the reference loader) and the
Dockerfile statically: there is no container engine here (see docs/deployment.md for what was tried)."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.ops


def load(tools: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools / "compose-check"), str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_compose_file_is_valid_and_complete(tools: Path) -> None:
    done = load(tools, ROOT / "docker-compose.yml")
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert set(services) >= {"kafka", "registry", "minio", "iceberg-rest", "prometheus", "grafana", "worker"}
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for name, svc in services.items():
        if "image" in svc and "build" not in svc:
            assert not svc["image"].endswith(":latest") and ":" in svc["image"], f"{name}: unpinned image"
    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile"
    assert worker["command"][0] == "run" and worker["command"][1].endswith("demo_validation.py")
    mounts = {v["target"]: Path(v["source"]) for s in services.values() for v in s.get("volumes", [])}
    assert mounts["/etc/prometheus/streamsvc-rules.yml"] == ROOT / "prometheus" / "streamsvc-rules.yml"
    assert mounts["/var/lib/grafana/dashboards/streamsvc"] == ROOT / "dashboards"
    for source in mounts.values():
        assert source.exists(), source


def test_compose_check_rejects_an_invalid_file(tools: Path, tmp_path: Path) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text(
        "services:\n  worker:\n    image: streamsvc:1\n    ports: {not: a list}\n    restartt: always\n"
    )
    assert load(tools, bad).returncode != 0


def test_dockerfile_statically() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [
        ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip() and not ln.startswith("#")
    ]
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage"
    for base in froms:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), f"unpinned or non-slim base {base}"
    final = lines[max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")) :]
    user = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert user and user[-1] not in ("root", "0"), "the final stage runs as a non-root user"
    entry = next(ln for ln in final if ln.upper().startswith("ENTRYPOINT "))
    assert json.loads(entry.split(None, 1)[1]) == ["streamsvc"]
    # ... the console script the tests run as `python -m streamsvc.cli.main`.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["streamsvc"] == "streamsvc.cli.main:main"
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY)", re.I)
    for ln in lines:
        if ln.upper().startswith(("ENV ", "ARG ")):
            assert not secretish.search(ln), f"secret in the image: {ln}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored
