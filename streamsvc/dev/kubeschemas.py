"""Kubernetes JSON schemas for offline `kubeconform`, from the PyPI wheel `kubernetes-validate`.

The wheel keeps one file per kind (`statefulset-apps-v1.json`, kubeconform's own naming) whose `$ref`s
point into a shared `/api/_definitions.json`, an absolute URL kubeconform cannot resolve offline. The
conversion writes standalone files: each kind with the definitions it reaches copied into its own
`definitions` and its refs rewritten to `#/definitions/...`, in the layout
`<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json`. CRD schemas (KEDA, prometheus-operator) are vendored
under tests/deploy/schemas in `{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json` form.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

KUBERNETES_VERSION = "1.37.0"
REF_PREFIXES = ("/api/_definitions.json#/$defs/", "#/$defs/")


def schema_dir() -> Path:
    home = Path(os.environ.get("STREAMSVC_HOME", Path.home() / ".cache" / "streamsvc"))
    return home / "tools" / f"kubernetes-schemas-v{KUBERNETES_VERSION}"


def _source() -> Path:
    root = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{KUBERNETES_VERSION}-local-strict"
    return Path(str(root))


def _rewrite(node: Any, seen: set[str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            prefix = next((p for p in REF_PREFIXES if isinstance(v, str) and v.startswith(p)), None)
            if k == "$ref" and prefix is not None:
                name = v[len(prefix) :]
                seen.add(name)
                out[k] = f"#/definitions/{name}"
            elif k not in ("$schema", "$id"):
                out[k] = _rewrite(v, seen)
        return out
    if isinstance(node, list):
        return [_rewrite(v, seen) for v in node]
    return node


def convert(target: Path | None = None) -> Path:
    """Write the standalone schemas (once; a marker file records completion). Returns the directory."""
    target = target or schema_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    src = _source()
    defs = json.loads((src / "_definitions.json").read_text())["$defs"]
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.json")):
        doc = json.loads(path.read_text())
        if path.name.startswith("_") or "x-kubernetes-group-version-kind" not in doc:
            continue  # only top-level kinds are looked up by kubeconform
        seen: set[str] = set()
        schema = _rewrite(doc, seen)
        definitions: dict[str, Any] = {}
        pending = list(seen)
        while pending:
            name = pending.pop()
            if name in definitions:
                continue
            found: set[str] = set()
            definitions[name] = _rewrite(defs[name], found)
            pending += [n for n in found if n not in definitions]
        schema["definitions"] = definitions
        (target / path.name).write_text(json.dumps(schema))
    marker.write_text(KUBERNETES_VERSION)
    return target


if __name__ == "__main__":
    print(convert(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
