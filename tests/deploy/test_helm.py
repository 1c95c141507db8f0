"""`helm lint` and `helm template | kubeconform -strict` (offline schemas) for the default values and every
helm/streamsvc/ci/*-values.yaml; a deliberately broken manifest is rejected."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from streamsvc.dev.kubeschemas import convert
from tests.support import ROOT

pytestmark = pytest.mark.ops
CHART = ROOT / "helm" / "streamsvc"
CRDS = ROOT / "tests" / "deploy" / "schemas"
VALUES = [None, *sorted((CHART / "ci").glob("*-values.yaml"))]


def run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=300)


def kubeconform(tools: Path, manifests: str) -> subprocess.CompletedProcess[str]:
    k8s = convert()
    return run(
        [
            str(tools / "kubeconform"),
            "-strict",
            "-summary",
            "-schema-location",
            f"{k8s}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            "-schema-location",
            f"{CRDS}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
            "-",
        ],
        manifests,
    )


def template(tools: Path, values: Path | None) -> list[dict]:  # type: ignore[type-arg]
    args = [str(tools / "helm"), "template", "t", str(CHART)] + (["-f", str(values)] if values else [])
    done = run(args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.mark.parametrize("values", VALUES, ids=lambda v: v.name if v else "default")
def test_lint_and_kubeconform(tools: Path, values: Path | None) -> None:
    extra = ["-f", str(values)] if values else []
    lint = run([str(tools / "helm"), "lint", "--strict", str(CHART), *extra])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = run([str(tools / "helm"), "template", "t", str(CHART), *extra])
    assert rendered.returncode == 0, rendered.stderr
    checked = kubeconform(tools, rendered.stdout)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in checked.stdout


def test_broken_manifest_is_rejected(tools: Path) -> None:
    docs = template(tools, None)
    workload = next(d for d in docs if d["kind"] == "StatefulSet")
    workload["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 60  # a typo'd field
    assert kubeconform(tools, yaml.safe_dump(workload)).returncode != 0
    workload = next(d for d in docs if d["kind"] == "StatefulSet")
    workload["spec"]["replicas"] = "three"
    assert kubeconform(tools, yaml.safe_dump(workload)).returncode != 0


def test_chart_semantics(tools: Path) -> None:
    default = {d["kind"]: d for d in template(tools, None)}
    pod = default["StatefulSet"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] == 60  # drainTimeoutSeconds
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    config = next(d for d in template(tools, None) if d["metadata"]["name"].endswith("-config"))
    assert "static_membership = true" in config["data"]["streamsvc.toml"]
    assert default["Service"]["spec"]["clusterIP"] == "None"
    assert "PodDisruptionBudget" in default

    deployment = template(tools, CHART / "ci" / "deployment-values.yaml")
    assert {d["kind"] for d in deployment} >= {"Deployment"}
    config = next(d for d in deployment if d["metadata"]["name"].endswith("-config"))
    assert "static_membership = false" in config["data"]["streamsvc.toml"]

    monitoring = {d["kind"]: d for d in template(tools, CHART / "ci" / "monitoring-values.yaml")}
    rules = yaml.safe_load((ROOT / "prometheus" / "streamsvc-rules.yml").read_text())
    assert monitoring["PrometheusRule"]["spec"] == rules  # the very file promtool tests
    dashboards = next(d for d in template(tools, None) if d["metadata"]["name"].endswith("-dashboards"))
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert len(dashboards["data"]) == len(list((ROOT / "dashboards").glob("*.json")))

    keda = {d["kind"]: d for d in template(tools, CHART / "ci" / "keda-values.yaml")}
    trigger = keda["ScaledObject"]["spec"]["triggers"][0]
    assert trigger["type"] == "kafka" and trigger["metadata"]["lagThreshold"] == "5000"
    assert "replicas" not in keda["StatefulSet"]["spec"]  # KEDA owns the replica count

    sink = {d["kind"]: d for d in template(tools, CHART / "ci" / "iceberg-sink-values.yaml")}
    assert sink["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["iceberg", "sink"]


def test_every_value_is_documented() -> None:
    """Every key has a comment right above it, or sits in a block whose key has one."""
    documented: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), start=1):
        key = re.match(r"^(\s*)[\w.-]+:", line)
        if key:
            indent = len(key.group(1))
            while documented and documented[-1][0] >= indent:
                documented.pop()
            here = previous.strip().startswith("#")
            assert here or any(d for _, d in documented), f"values.yaml:{number} undocumented: {line.strip()}"
            documented.append((indent, here))
        if line.strip():
            previous = line
