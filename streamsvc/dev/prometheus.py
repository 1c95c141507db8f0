"""A real Prometheus on loopback for the observability tests (Debian's `prometheus` package, 2.42).

`.ci/ops-tools.sh` installs it with apt. `LocalPrometheus` writes a temporary config that scrapes the
given targets every second and loads the given rule files, starts `prometheus` on a free 127.0.0.1 port
with its TSDB in a temp directory, and queries it through the HTTP API.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from streamsvc.errors import ConfigError


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise ConfigError("prometheus is not installed: run `bash .ci/ops-tools.sh` (apt package prometheus)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPrometheus:
    """`with LocalPrometheus({"worker": ["127.0.0.1:9400"]}, [rules.yml]) as prom: prom.query("up")`."""

    def __init__(self, targets: dict[str, list[str]], rule_files: list[Path], interval: str = "1s") -> None:
        self.targets = targets
        self.rule_files = rule_files
        self.interval = interval
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="streamsvc-prom-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addrs}]}
                for job, addrs in self.targets.items()
            ],
        }

    def start(self, timeout: float = 60.0) -> LocalPrometheus:
        config = self.dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        log = (self.dir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("prometheus did not become ready")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raises on an error status (an invalid query, say)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            body = json.loads(err.read())
        if body.get("status") != "success":
            raise ValueError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (or [] for an empty result)."""
        data = self.api("query", query=expr)
        result = data["result"]
        return result if isinstance(result, list) else [result]

    def query_range(self, expr: str, seconds: int = 60, step: str = "1s") -> list[dict[str, Any]]:
        now = time.time()
        data = self.api("query_range", query=expr, start=str(now - seconds), end=str(now), step=step)
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def firing(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts() if a["labels"].get("alertname") == name and a["state"] == "firing"]

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)
