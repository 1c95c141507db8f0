"""`bench/run` end to end at a small size against the real broker (slow: it starts engine processes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.kafka
def test_bench_run_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(ROOT / "bench" / "run"),
            "--records",
            "20000",
            "--reps",
            "1",
            "--engines",
            "raw,streamsvc-eos",
            "--latency-engines",
            "",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [result] = tmp_path.glob("q5-*.json")
    summary = {e["engine"]: e for e in json.loads(result.read_text())["summary"]}
    assert summary["raw"]["status"] == "ok"
    assert summary["streamsvc-eos"]["status"] == "ok", summary["streamsvc-eos"]
    assert summary["streamsvc-eos"]["gate"][0].startswith("equal")
    assert summary["streamsvc-eos"]["events_per_s"]["median"] > 0
