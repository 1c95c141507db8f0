"""A worker process: hosts agents on threads, serves the control plane, drains on SIGTERM.

Exit codes: 0 after a clean drain (SIGTERM/SIGINT or input caught up), 2 after a fatal Kafka error
(fenced: the orchestrator restarts the pod and the new instance owns the transactional id), 1 after any
other unexpected error.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from streamsvc.config import Settings
from streamsvc.errors import FatalRuntimeError
from streamsvc.observability.http import ControlPlane, HealthState, serve_control_plane_for
from streamsvc.observability.logging import get_logger
from streamsvc.runtime.agent import Agent
from streamsvc.topology.model import Topology

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_FATAL = 2


class Worker:
    """Runs one agent per topology until stopped. Use `run()` in a process, or `start()`/`stop()` in tests."""

    def __init__(self, topologies: list[Topology], settings: Settings, until_caught_up: bool = False) -> None:
        self.settings = settings
        self.health = HealthState()
        self.agents = [Agent(t, settings, self.health, until_caught_up) for t in topologies]
        self.stop_event = threading.Event()
        self.exit_code = EXIT_OK
        self.log = get_logger(app=settings.app_id)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._server: ControlPlane | None = None

    def _run_agent(self, agent: Agent) -> None:
        try:
            agent.run(self.stop_event)
        except FatalRuntimeError:
            self._fail(EXIT_FATAL)
        except Exception:
            self.log.error("agent_crashed", agent=agent.name, exc_info=True)
            self._fail(EXIT_ERROR)

    def _fail(self, code: int) -> None:
        with self._lock:
            self.exit_code = max(self.exit_code, code)
        self.stop_event.set()  # one agent down takes the worker down: the pod restarts as a whole

    def start(self) -> None:
        """Serve the control plane (when `metrics_port` is set) and start every agent on its own thread."""
        if self._server is None:
            self._server = serve_control_plane_for(self.settings, self.health, self.log)
        for agent in self.agents:
            t = threading.Thread(
                target=self._run_agent, args=(agent,), name=f"agent-{agent.name}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> int:
        """Wait for the agents; once all have finished, stop the control plane. Returns the exit code."""
        for t in self._threads:
            t.join(timeout)
        if self._server is not None and not self.alive:
            self._server.shutdown()
            self._server = None
        return self.exit_code

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or until every agent finished; return the process exit code."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.log.info("signal_received_draining", signal=signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while self.alive:
            self.join(0.2)
        self.join()
        self.log.info("worker_exit", exit_code=self.exit_code)
        return self.exit_code
