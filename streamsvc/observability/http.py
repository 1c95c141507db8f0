"""The control-plane HTTP endpoint: /metrics, /healthz (poll loop alive), /readyz (partitions assigned
or waiting for them after start-up)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class HealthState:
    """Updated by the agents' poll loops; read by the probes."""

    def __init__(self, liveness_timeout_s: float = 60.0) -> None:
        self.liveness_timeout_s = liveness_timeout_s
        self._last_poll: dict[str, float] = {}
        self._ready: dict[str, bool] = {}
        self._lock = threading.Lock()

    def polled(self, agent: str) -> None:
        with self._lock:
            self._last_poll[agent] = time.monotonic()

    def set_ready(self, agent: str, ready: bool) -> None:
        with self._lock:
            self._ready[agent] = ready

    def healthy(self) -> bool:
        now = time.monotonic()
        with self._lock:
            return bool(self._last_poll) and all(
                now - t < self.liveness_timeout_s for t in self._last_poll.values()
            )

    def ready(self) -> bool:
        with self._lock:
            return bool(self._ready) and all(self._ready.values())


def _handler(health: HealthState) -> type[BaseHTTPRequestHandler]:
    routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest()),
        "/healthz": lambda: (
            (200, "text/plain", b"ok\n") if health.healthy() else (503, "text/plain", b"stalled\n")
        ),
        "/readyz": lambda: (
            (200, "text/plain", b"ready\n") if health.ready() else (503, "text/plain", b"not ready\n")
        ),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            status, ctype, body = route() if route else (404, "text/plain", b"not found\n")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: probes hit this often
            pass

    return Handler


def serve_control_plane(host: str, port: int, health: HealthState) -> ThreadingHTTPServer:
    """Start the endpoint on a daemon thread and return the server (call `.shutdown()` to stop)."""
    server = ThreadingHTTPServer((host, port), _handler(health))
    threading.Thread(target=server.serve_forever, name="control-plane", daemon=True).start()
    return server
