"""A worker process: hosts agents on threads, serves the control plane, drains on SIGTERM.

Exit codes: 0 after a clean drain (SIGTERM/SIGINT or input caught up), 2 after a fatal Kafka error
(fenced: the orchestrator restarts the pod and the new instance owns the transactional id), 1 after any
other error -- a configuration the agent cannot run with, a crash, or a client call stuck past its
deadline. A stuck client cannot be closed cleanly, so the process then exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Protocol

from streamsvc.config import Settings
from streamsvc.eos.errors import DeadlineExceeded
from streamsvc.errors import ConfigError, FatalRuntimeError, TopologyError
from streamsvc.observability.http import ControlPlane, HealthState, serve_control_plane_for
from streamsvc.observability.logging import get_logger
from streamsvc.runtime.agent import Agent
from streamsvc.topology.model import Topology

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_FATAL = 2
DRAIN_TIMEOUT_S = 60.0  # after stop, agents have this long to finish before the process exits anyway


class Runnable(Protocol):
    name: str

    def run(self, stop: threading.Event) -> None: ...


class Worker:
    """Runs one agent per topology (or the given `agents`) until stopped. Use `run()` in a process,
    or `start()`/`join()`/`stop()` in tests."""

    def __init__(
        self,
        topologies: Sequence[Topology],
        settings: Settings,
        until_caught_up: bool = False,
        agents: Sequence[Runnable] = (),
        health: HealthState | None = None,
    ) -> None:
        self.settings = settings
        self.health = health or HealthState()
        explicit = settings.transactional_id
        self.agents: list[Agent] = [
            Agent(
                t,
                settings,
                self.health,
                until_caught_up,
                # An explicit id names one producer: several agents each get their own under it.
                transactional_id=f"{explicit}.{t.name}" if explicit and len(topologies) > 1 else None,
            )
            for t in topologies
        ]
        self.others: list[Runnable] = list(agents)  # e.g. Iceberg sink agents
        self.stop_event = threading.Event()
        self.exit_code = EXIT_OK
        self.errors: list[str] = []  # user-facing reasons for a non-zero exit (configuration)
        self.stuck = False
        self.log = get_logger(app=settings.app_id)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._server: ControlPlane | None = None

    def _run_agent(self, agent: Runnable) -> None:
        try:
            agent.run(self.stop_event)
        except FatalRuntimeError:
            self.log.error("agent_fatal", agent=agent.name, exc_info=True)
            self._fail(EXIT_FATAL)
        except (ConfigError, TopologyError) as exc:
            self.log.error("agent_cannot_start", agent=agent.name, error=str(exc))
            self.errors.append(f"{agent.name}: {exc}")
            self._fail(EXIT_ERROR)
        except DeadlineExceeded as exc:
            self.log.error("agent_stuck", agent=agent.name, error=str(exc))
            self.stuck = True
            self._fail(EXIT_ERROR)
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
        for agent in [*self.agents, *self.others]:
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
        stopped_at: float | None = None
        while self.alive:
            self.join(0.2)
            if self.stop_event.is_set():
                stopped_at = stopped_at or time.monotonic()
                if self.stuck or time.monotonic() - stopped_at > DRAIN_TIMEOUT_S:
                    return self._exit_now()
        self.join()
        if self.stuck:
            return self._exit_now()
        self.log.info("worker_exit", exit_code=self.exit_code)
        return self.exit_code

    def _exit_now(self) -> int:
        """Exit without closing the clients: a stuck librdkafka call would block their destructors."""
        code = self.exit_code or EXIT_ERROR
        self.log.error("worker_exit_without_drain", exit_code=code, stuck=self.stuck)
        for line in self.errors:
            print(f"streamsvc: error: {line}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(code)
