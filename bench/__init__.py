"""Benchmark harnesses (docs/benchmarks.md)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
