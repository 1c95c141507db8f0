"""The control plane: an asyncio HTTP server on a uvloop event loop, on its own thread.

    /metrics      Prometheus text format
    /healthz      200 while every agent's poll loop turned within `liveness_timeout_s`
    /readyz       200 once every agent has partitions assigned and none is marked unready
    /             the status page (topology graph, live counts, lag, DLQ reasons, commits, watermarks)
    /api/status   the same data as JSON (the page refreshes from it)

The agents run on threads and only touch `HealthState` and the Prometheus registry, both thread-safe;
the loop thread only reads them, so a busy agent cannot stall a probe.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import uvloop
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamsvc.config import Settings
from streamsvc.observability.page import render_page
from streamsvc.observability.status import BOARD, StatusBoard

MAX_REQUEST_HEAD = 16 * 1024


class HealthState:
    """Updated by the agents' poll loops; read by the probes."""

    def __init__(self, liveness_timeout_s: float = 60.0) -> None:
        self.liveness_timeout_s = liveness_timeout_s
        self._last_poll: dict[str, float] = {}
        self._ready: dict[str, bool] = {}
        self._unready: dict[str, dict[str, str]] = {}  # agent -> reason key -> message
        self._lock = threading.Lock()

    def polled(self, agent: str) -> None:
        with self._lock:
            self._last_poll[agent] = time.monotonic()

    def set_ready(self, agent: str, ready: bool) -> None:
        """Partitions assigned (True) or not (False)."""
        with self._lock:
            self._ready[agent] = ready

    def set_unready(self, agent: str, reason: str, message: str = "") -> None:
        """Mark `agent` not ready for `reason` (e.g. "consecutive_aborts") until `clear_unready`."""
        with self._lock:
            self._unready.setdefault(agent, {})[reason] = message or reason

    def clear_unready(self, agent: str, reason: str | None = None) -> None:
        """Withdraw one reason, or all of the agent's reasons when `reason` is None."""
        with self._lock:
            if reason is None:
                self._unready.pop(agent, None)
            else:
                self._unready.get(agent, {}).pop(reason, None)

    def healthy(self) -> bool:
        now = time.monotonic()
        with self._lock:
            return bool(self._last_poll) and all(
                now - t < self.liveness_timeout_s for t in self._last_poll.values()
            )

    def not_ready_reasons(self) -> list[str]:
        """Why the process is not ready; empty when it is."""
        with self._lock:
            if not self._ready:
                return ["no agent started"]
            reasons = [f"{agent}: no partitions assigned" for agent, ok in self._ready.items() if not ok]
            for agent, why in sorted(self._unready.items()):
                reasons += [f"{agent}: {message}" for message in why.values()]
            return reasons

    def ready(self) -> bool:
        return not self.not_ready_reasons()

    def agents(self) -> list[str]:
        with self._lock:
            return sorted(set(self._ready) | set(self._last_poll))


Response = tuple[int, str, bytes]


class ControlPlane:
    """The HTTP endpoint. `start()` binds (port 0 picks a free one, see `.port`); `shutdown()` stops."""

    def __init__(
        self,
        host: str,
        port: int,
        health: HealthState,
        board: StatusBoard = BOARD,
        apps: Iterable[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.health = health
        self.board = board
        self.apps = list(apps) if apps is not None else None  # the status page shows these apps only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self.routes: dict[str, Callable[[], Response]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest()),
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/": lambda: (200, "text/html; charset=utf-8", render_page(self._status()).encode()),
            "/api/status": lambda: (200, "application/json", orjson.dumps(self._status())),
        }

    def _status(self) -> dict[str, object]:
        snapshot = self.board.snapshot(self.apps)
        snapshot["healthy"] = self.health.healthy()
        snapshot["not_ready"] = self.health.not_ready_reasons()
        return snapshot

    def _healthz(self) -> Response:
        if self.health.healthy():
            return 200, "text/plain", b"ok\n"
        return 503, "text/plain", b"stalled\n"

    def _readyz(self) -> Response:
        reasons = self.health.not_ready_reasons()
        if not reasons:
            return 200, "text/plain", b"ready\n"
        return 503, "text/plain", ("not ready\n" + "".join(f"{r}\n" for r in reasons)).encode()

    def start(self) -> ControlPlane:
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
                )
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as exc:  # reported to the caller of start()
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                self._server.close()
                loop.run_until_complete(self._server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=serve, name="control-plane", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def shutdown(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
        route = self.routes.get(target.split("?", 1)[0])
        if method not in ("GET", "HEAD"):
            status, ctype, body = 405, "text/plain", b"method not allowed\n"
        elif route is None:
            status, ctype, body = 404, "text/plain", b"not found\n"
        else:
            try:
                status, ctype, body = route()
            except Exception as exc:  # a probe must get an answer, never a dropped connection
                status, ctype, body = 500, "text/plain", f"error: {exc!r}\n".encode()
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}
        header = (
            f"HTTP/1.1 {status} {reason.get(status, 'Service Unavailable')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            writer.write(header if method == "HEAD" else header + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def serve_control_plane(
    host: str, port: int, health: HealthState, apps: Iterable[str] | None = None
) -> ControlPlane:
    """Start the endpoint on its own thread and return it (call `.shutdown()` to stop)."""
    return ControlPlane(host, port, health, apps=apps).start()


def serve_control_plane_for(settings: Settings, health: HealthState, log: Any) -> ControlPlane | None:
    """The control plane of a worker process per its settings (`metrics_port` 0: none)."""
    if not settings.metrics_port:
        return None
    plane = serve_control_plane(settings.metrics_host, settings.metrics_port, health, [settings.app_id])
    log.info("control_plane_listening", host=settings.metrics_host, port=plane.port)
    return plane
