"""The worker's HTTP control plane: /metrics, /healthz and /readyz on a real socket."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import orjson

from streamsvc.config import Settings
from streamsvc.runtime.worker import Worker
from streamsvc.topology.loader import load_topology
from tests.support import ROOT, produce, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_health_and_readiness(bootstrap: str, names) -> None:  # type: ignore[no-untyped-def]
    source = names.topic("input", 2)
    names.track(names("output"), source + ".dlq")
    produce(
        bootstrap, source, [(b"k", orjson.dumps({"id": i, "n": i})) for i in range(50)] + [(b"k", b"{bad")]
    )
    port = free_port()
    app = names("app")
    settings = Settings(
        app_id=app,
        bootstrap_servers=bootstrap,
        instance_id="http-0",
        metrics_host="127.0.0.1",
        metrics_port=port,
        topics={"input": source, "output": names("output")},
    )
    worker = Worker([load_topology(str(ROOT / "tests" / "topologies" / "keyed_transform.py"))], settings)
    base = f"http://127.0.0.1:{port}"
    worker.start()
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 60, "readiness")
        assert get(f"{base}/healthz") == (200, "ok\n")
        consumed = (
            f'streamsvc_records_consumed_total{{agent="keyed-transform",app="{app}",topic="{source}"}} 51.0'
        )
        dead = (
            f'streamsvc_records_dead_lettered_total{{agent="keyed-transform",app="{app}",'
            f'error_class="streamsvc.errors.MalformedPayloadError",stage="decode",topic="{source}"}} 1.0'
        )

        def metrics_once_consumed() -> str | None:
            body = get(f"{base}/metrics")[1]
            return body if consumed in body else None

        body = wait_for(metrics_once_consumed, 60, "consumed=51 in /metrics")
        assert dead in body
        assert "streamsvc_transactions_committed_total" in body
        assert get(f"{base}/nope")[0] == 404
    finally:
        worker.stop()
        assert worker.join(60) == 0
    try:
        get(f"{base}/healthz")
        raise AssertionError("the control plane must stop with the worker")
    except (urllib.error.URLError, ConnectionError):
        pass
