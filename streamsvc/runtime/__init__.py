"""Runtime: how a topology is executed (agents, worker process)."""

from streamsvc.runtime.agent import Agent
from streamsvc.runtime.compiled import Tally
from streamsvc.runtime.processor import Processor
from streamsvc.runtime.worker import Worker

__all__ = ["Agent", "Processor", "Tally", "Worker"]
